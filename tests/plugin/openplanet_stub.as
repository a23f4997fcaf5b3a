// OUR declared stub of the subset of OpenPlanet's API (and of the game's classes) that the
// EVO RL plugin uses, written from OpenPlanet's public documentation and plugins. It is NOT
// OpenPlanet's code and is not complete: it exists so that tests/plugin/ascheck.cpp can compile
// plugin/src/*.as with Debian's AngelScript library and catch syntax and type errors in CI.
// Keep it to exactly what the plugin calls; a name added here must exist in OpenPlanet.

class vec3 {
    float x;
    float y;
    float z;
}

class MemoryBuffer {
    MemoryBuffer() {}
    MemoryBuffer(uint size) {}
    void Write(uint8 v) {}
    void Write(uint16 v) {}
    void Write(uint32 v) {}
    void Write(uint64 v) {}
    void Write(int32 v) {}
    void Write(float v) {}
    void Write(const string &in v) {}
    void Seek(int offset, int origin) {}
    uint64 GetSize() { return 0; }
}

namespace Net {
    class Socket {
        bool Listen(const string &in host, uint16 port) { return true; }
        Socket@ Accept() { return null; }
        void Close() {}
        bool IsHungUp() { return false; }
        int Available() { return 0; }
        uint16 ReadUint16() { return 0; }
        uint32 ReadUint32() { return 0; }
        uint64 ReadUint64() { return 0; }
        int32 ReadInt32() { return 0; }
        string ReadRaw(uint n) { return ""; }
        bool Write(MemoryBuffer@ buf) { return true; }
    }
}

namespace Meta {
    class Plugin {
        string Version;
    }
    Plugin@ ExecutingPlugin() { return Plugin(); }
}

namespace Time {
    uint64 Now = 0;
    int64 Stamp = 0;
}

namespace Math {
    float Atan2(float y, float x) { return 0; }
    float Asin(float x) { return 0; }
    float Clamp(float x, float lo, float hi) { return x; }
}

namespace UI {
    enum WindowFlags { None = 0, AlwaysAutoResize = 64 }
    bool Begin(const string &in title, bool &inout open, int flags = 0) { return true; }
    void End() {}
    void Text(const string &in text) {}
}

funcdef void CoroutineFunc();
void startnew(CoroutineFunc@ func) {}
void yield() {}
void sleep(int ms) {}
void print(const string &in text) {}

enum EPlugSurfaceMaterialId {
    Concrete, Pavement, Grass, Ice, Metal, Sand, Dirt, Turbo_Deprecated, DirtRoad, Rubber,
    SlidingRubber, Test, Rock, Water, Wood, Danger, Asphalt, WetDirtRoad, WetAsphalt,
    WetPavement, WetGrass, Snow, ResonantMetal, GolfBall, GolfWall, GolfGround, Turbo2_Deprecated,
    Bumper, NotCollidable, FreeWheeling_Deprecated, TurboRoulette_Deprecated, WallJump,
    MetalTrans, Pylon, Green, Plastic, RoadSynthetic, TechMagnetic, RoadIce, XXX_Null
}

namespace SGamePlaygroundUIConfig {
    enum EUISequence {
        None, Playing, Intro, Outro, Podium, CustomMTClip, EndRound, PlayersPresentation,
        UIInteraction, RollingBackgroundIntro, CustomMTClip_WithUIInteraction, Finish
    }
}

class CSceneVehicleVisState {
    vec3 Position;
    vec3 WorldVel;
    vec3 Dir;
    vec3 Left;
    vec3 Up;
    float FrontSpeed;
    float InputSteer;
    float InputGasPedal;
    bool InputIsBraking;
    uint CurGear;
    EPlugSurfaceMaterialId FLGroundContactMaterial;
    EPlugSurfaceMaterialId FRGroundContactMaterial;
    EPlugSurfaceMaterialId RLGroundContactMaterial;
    EPlugSurfaceMaterialId RRGroundContactMaterial;
    bool IsGroundContact;
    bool IsTopContact;
    bool IsTurbo;
    bool IsWheelsBurning;
    float WaterImmersionCoef;
}

namespace VehicleState {  // from the VehicleState plugin (info.toml dependency)
    CSceneVehicleVisState@ ViewingPlayerState() { return null; }
    float GetRPM(CSceneVehicleVisState@ vis) { return 0; }
    float GetSideSpeed(CSceneVehicleVisState@ vis) { return 0; }
}

class CGameScriptMapWaypoint {
    bool IsFinish;
}

class CGameScriptMapLandmark {
    string Tag;
    uint Order;
    vec3 Position;
    CGameScriptMapWaypoint@ Waypoint;
}

class CSmArena {
    array<CGameScriptMapLandmark@> MapLandmarks;
}

class CGamePlayer {}

class CSmScriptPlayer {}

class CSmPlayer : CGamePlayer {
    uint StartTime;
    uint CurrentLaunchedRespawnLandmarkIndex;
    CSmScriptPlayer@ ScriptAPI;
}

class CGameTerminal {
    CGamePlayer@ ControlledPlayer;
    SGamePlaygroundUIConfig::EUISequence UISequence_Current;
}

class CGamePlayground {
    array<CGameTerminal@> GameTerminals;
}

class CSmArenaClient : CGamePlayground {
    CSmArena@ Arena;
}

class CGamePlaygroundScript {}

class CSmArenaRulesMode : CGamePlaygroundScript {
    void RespawnPlayer(CSmScriptPlayer@ player) {}
    void UnspawnPlayer(CSmScriptPlayer@ player) {}
}

class CGameCtnChallengeInfo {
    string MapUid;
}

class CGameCtnChallenge {
    CGameCtnChallengeInfo@ MapInfo;
    string MapName;
    uint TMObjective_AuthorTime;
}

class CGamePlaygroundClientScriptAPI {
    int GameTime;
}

class CTrackManiaNetwork {
    CGamePlaygroundClientScriptAPI@ PlaygroundClientScriptAPI;
}

class CGameManiaTitleControlScriptAPI {
    void PlayMap(const string &in map, const string &in mode, const string &in settings) {}
}

class CSystemPlatform {
    string ExeVersion;
}

class CGameCtnApp {
    CGamePlayground@ CurrentPlayground;
    CSystemPlatform@ SystemPlatform;
}

class CTrackMania : CGameCtnApp {
    CGameCtnChallenge@ RootMap;
    CTrackManiaNetwork@ Network;
    CGamePlaygroundScript@ PlaygroundScript;
    CGameManiaTitleControlScriptAPI@ ManiaTitleControlScriptAPI;
    void BackToMainMenu() {}
}

CGameCtnApp@ GetApp() { return null; }
