// Reading the car and the race from the game, once per frame.
//
// Verified from OpenPlanet's public API and plugins: VehicleState::ViewingPlayerState() and the
// CSceneVehicleVisState fields used here, GetApp(), CTrackMania.CurrentPlayground, the map's
// landmarks, the UI sequence for the finish. Unverified in the game (no game here; see
// docs/trackmania.md): the race clock source, respawn/restart through PlaygroundScript, and
// map loading through ManiaTitleControlScriptAPI.PlayMap with a local path.

class Snapshot {
    bool spawned = false;
    bool playground = false;
    bool finished = false;
    int gameTime = 0;
    int raceTime = 0;
    uint flags = 0;
    vec3 pos;
    vec3 vel;
    float yaw = 0;
    float pitch = 0;
    float roll = 0;
    float frontSpeed = 0;
    float sideSpeed = 0;
    float rpm = 0;
    float steer = 0;
    float gas = 0;
    float brake = 0;
    uint8 gear = 0;
    uint8 wheels = 0;
    array<uint8> surfaces = {0, 0, 0, 0};
    int respawnLandmark = -1;
}

namespace Game {
    CTrackMania@ App() {
        return cast<CTrackMania>(GetApp());
    }

    CSmArenaClient@ Playground() {
        CTrackMania@ app = App();
        if (app is null) return null;
        return cast<CSmArenaClient>(app.CurrentPlayground);
    }

    CSmPlayer@ Player() {
        CSmArenaClient@ pg = Playground();
        if (pg is null || pg.GameTerminals.Length == 0) return null;
        return cast<CSmPlayer>(pg.GameTerminals[0].ControlledPlayer);
    }

    string MapUid() {
        CTrackMania@ app = App();
        if (app is null || app.RootMap is null) return "";
        return app.RootMap.MapInfo.MapUid;
    }

    uint8 Surface(EPlugSurfaceMaterialId m) {
        switch (m) {
            case EPlugSurfaceMaterialId::XXX_Null: return Proto::SURF_NONE;
            case EPlugSurfaceMaterialId::Asphalt:
            case EPlugSurfaceMaterialId::Concrete:
            case EPlugSurfaceMaterialId::Pavement:
            case EPlugSurfaceMaterialId::RoadSynthetic:
            case EPlugSurfaceMaterialId::TechMagnetic:
            case EPlugSurfaceMaterialId::WetAsphalt:
            case EPlugSurfaceMaterialId::WetPavement: return Proto::SURF_ROAD;
            case EPlugSurfaceMaterialId::Dirt:
            case EPlugSurfaceMaterialId::DirtRoad:
            case EPlugSurfaceMaterialId::WetDirtRoad:
            case EPlugSurfaceMaterialId::Sand: return Proto::SURF_DIRT;
            case EPlugSurfaceMaterialId::Grass:
            case EPlugSurfaceMaterialId::Green:
            case EPlugSurfaceMaterialId::WetGrass: return Proto::SURF_GRASS;
            case EPlugSurfaceMaterialId::Ice:
            case EPlugSurfaceMaterialId::RoadIce: return Proto::SURF_ICE;
            case EPlugSurfaceMaterialId::Water: return Proto::SURF_WATER;
            case EPlugSurfaceMaterialId::Plastic: return Proto::SURF_PLASTIC;
            case EPlugSurfaceMaterialId::Snow: return Proto::SURF_SNOW;
            case EPlugSurfaceMaterialId::Wood: return Proto::SURF_WOOD;
            case EPlugSurfaceMaterialId::Metal:
            case EPlugSurfaceMaterialId::ResonantMetal: return Proto::SURF_METAL;
        }
        return Proto::SURF_OTHER;
    }

    Snapshot@ Read() {
        Snapshot s;
        CSmArenaClient@ pg = Playground();
        s.playground = pg !is null;
        CSceneVehicleVisState@ vis = VehicleState::ViewingPlayerState();
        CSmPlayer@ player = Player();
        if (pg is null || vis is null || player is null) return s;
        s.spawned = true;
        CTrackMania@ app = App();
        s.gameTime = int(app.Network.PlaygroundClientScriptAPI.GameTime);
        s.raceTime = s.gameTime - int(player.StartTime);
        s.finished = pg.GameTerminals[0].UISequence_Current == SGamePlaygroundUIConfig::EUISequence::Finish;
        s.pos = vis.Position;
        s.vel = vis.WorldVel;
        // our convention: yaw = atan2(dir.z, dir.x) (the car points along (cos, sin) in x-z)
        s.yaw = Math::Atan2(vis.Dir.z, vis.Dir.x);
        s.pitch = Math::Asin(Math::Clamp(vis.Dir.y, -1.0f, 1.0f));
        s.roll = Math::Asin(Math::Clamp(vis.Left.y, -1.0f, 1.0f));
        s.frontSpeed = vis.FrontSpeed;
        s.sideSpeed = VehicleState::GetSideSpeed(vis);
        s.rpm = VehicleState::GetRPM(vis);
        s.steer = vis.InputSteer;
        s.gas = vis.InputGasPedal;
        s.brake = vis.InputIsBraking ? 1.0f : 0.0f;
        s.gear = uint8(vis.CurGear);
        s.surfaces[0] = Surface(vis.FLGroundContactMaterial);
        s.surfaces[1] = Surface(vis.FRGroundContactMaterial);
        s.surfaces[2] = Surface(vis.RLGroundContactMaterial);
        s.surfaces[3] = Surface(vis.RRGroundContactMaterial);
        for (uint i = 0; i < 4; i++) {
            if (s.surfaces[i] != Proto::SURF_NONE) s.wheels |= uint8(1 << i);
        }
        s.respawnLandmark = int(player.CurrentLaunchedRespawnLandmarkIndex);
        s.flags = Proto::F_SPAWNED | Proto::F_PLAYGROUND_LOADED;
        if (s.finished) s.flags |= Proto::F_FINISHED;
        else if (s.raceTime >= 0) s.flags |= Proto::F_RACE_RUNNING;
        if (vis.IsGroundContact) s.flags |= Proto::F_GROUND_CONTACT;
        if (vis.IsTopContact) s.flags |= Proto::F_TOP_CONTACT;
        if (vis.IsTurbo) s.flags |= Proto::F_TURBO;
        if (vis.IsWheelsBurning) s.flags |= Proto::F_WHEELS_BURNING;
        if (vis.WaterImmersionCoef > 0.1f) s.flags |= Proto::F_IN_WATER;
        return s;
    }

    // the kind of a landmark for TRACK, or -1 for landmarks that are not waypoints
    int LandmarkKind(CGameScriptMapLandmark@ lm) {
        if (lm.Tag == "Spawn") return Proto::LM_SPAWN;
        if (lm.Tag == "StartFinish") return Proto::LM_START_FINISH;
        if (lm.Waypoint !is null && lm.Waypoint.IsFinish) return Proto::LM_FINISH;
        if (lm.Tag == "LinkedCheckpoint") return Proto::LM_LINKED_CHECKPOINT;
        if (lm.Tag == "Checkpoint") return Proto::LM_CHECKPOINT;
        return -1;
    }

    bool IsCheckpoint(int landmark) {
        CSmArenaClient@ pg = Playground();
        if (pg is null || landmark < 0 || uint(landmark) >= pg.Arena.MapLandmarks.Length) return false;
        int kind = LandmarkKind(pg.Arena.MapLandmarks[landmark]);
        return kind == Proto::LM_CHECKPOINT || kind == Proto::LM_LINKED_CHECKPOINT;
    }

    uint CheckpointTotal() {
        CSmArenaClient@ pg = Playground();
        if (pg is null) return 0;
        // linked checkpoints share an order: count distinct orders
        array<int> orders;
        for (uint i = 0; i < pg.Arena.MapLandmarks.Length; i++) {
            CGameScriptMapLandmark@ lm = pg.Arena.MapLandmarks[i];
            int kind = LandmarkKind(lm);
            if (kind != Proto::LM_CHECKPOINT && kind != Proto::LM_LINKED_CHECKPOINT) continue;
            if (kind == Proto::LM_LINKED_CHECKPOINT && orders.Find(int(lm.Order)) >= 0) continue;
            orders.InsertLast(int(lm.Order));
        }
        return orders.Length;
    }

    // Respawn (to the last checkpoint) or restart (to the start) through the rules script;
    // false where the game gives the plugin no rules script (then the worker uses inputs).
    bool Respawn(bool toStart) {
        CTrackMania@ app = App();
        CSmPlayer@ player = Player();
        if (app is null || player is null) return false;
        CSmArenaRulesMode@ rules = cast<CSmArenaRulesMode>(app.PlaygroundScript);
        if (rules is null) return false;
        CSmScriptPlayer@ scriptPlayer = cast<CSmScriptPlayer>(player.ScriptAPI);
        if (toStart) {
            rules.UnspawnPlayer(scriptPlayer);
        }
        rules.RespawnPlayer(scriptPlayer);
        return true;
    }
}
