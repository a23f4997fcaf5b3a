// The bridge server: one worker at a time, protocol v1 (docs/protocol.md).

class Bridge {
    Net::Socket@ listener;
    Net::Socket@ client;
    bool handshaken = false;
    uint seq = 0;
    uint episode = 0;
    uint frame = 0;
    int streamEvery = 1;
    int heartbeatMs = 500;
    uint64 lastHeartbeat = 0;
    int lastRaceTime = 0;
    int lastLandmark = -1;
    uint cpPassed = 0;
    int lastCpTime = 0;
    uint respawns = 0;
    bool wasFinished = false;
    bool wasSpawned = false;
    string mapUid = "";
    uint pendingFlags = 0;
    string status = "starting";
    uint malformed = 0;
    // a LOAD_MAP running in its own coroutine
    string loadPath = "";
    uint loadReqId = 0;
    bool loading = false;

    bool Listen(const string &in host, uint16 port) {
        @listener = Net::Socket();
        if (!listener.Listen(host, port)) {
            status = "cannot listen on " + host + ":" + port + " (port in use?)";
            return false;
        }
        status = "listening on " + host + ":" + port;
        return true;
    }

    void Close() {
        if (client !is null) client.Close();
        if (listener !is null) listener.Close();
        @client = null;
        @listener = null;
    }

    void Drop(const string &in why) {
        if (client !is null) client.Close();
        @client = null;
        handshaken = false;
        status = "client gone (" + why + "); listening again";
        print("EVO RL bridge: " + status);
    }

    bool Send(MemoryBuffer@ buf) {
        if (client is null) return false;
        buf.Seek(0, 0);
        if (!client.Write(buf)) {
            Drop("write failed");
            return false;
        }
        return true;
    }

    // one plugin frame: accept, read commands, stream the state
    void Tick() {
        if (client is null) {
            Net::Socket@ incoming = listener.Accept();
            if (incoming is null) return;
            @client = incoming;
            handshaken = false;
            MemoryBuffer buf(0);
            Proto::Hello(buf, "evorl-plugin/" + Meta::ExecutingPlugin().Version, GetApp().SystemPlatform.ExeVersion);
            Send(buf);
            status = "client connected; waiting for HELLO_ACK";
            return;
        }
        if (client.IsHungUp()) {
            Drop("hung up");
            return;
        }
        ReadCommands();
        if (client is null || !handshaken) return;
        StreamState();
    }

    void ReadCommands() {
        // every command has an 8-byte header then its payload; read only complete messages
        while (client !is null && client.Available() >= 8) {
            uint16 type = client.ReadUint16();
            client.ReadUint16(); // flags
            uint length = client.ReadUint32();
            if (length > Proto::MAX_PAYLOAD) {
                Drop("a frame announced " + length + " bytes: the stream is corrupt");
                return;
            }
            uint64 deadline = Time::Now + 1000;
            while (client.Available() < int(length)) {
                if (Time::Now > deadline || client.IsHungUp()) {
                    Drop("a message was cut short");
                    return;
                }
                yield();
            }
            Handle(type, length);
        }
    }

    void Handle(uint16 type, uint length) {
        if (!handshaken) {
            if (type != Proto::HELLO_ACK || length != 12) {
                MemoryBuffer buf(0);
                Proto::Result(buf, 0, Proto::VERSION, "expected HELLO_ACK first");
                Send(buf);
                Drop("no HELLO_ACK");
                return;
            }
            string magic = client.ReadRaw(4);
            uint16 major = client.ReadUint16();
            uint16 minor = client.ReadUint16();
            client.ReadUint32(); // caps wanted
            if (magic != "EVOC" || major != Proto::MAJOR) {
                MemoryBuffer buf(0);
                Proto::Result(buf, 0, Proto::VERSION, "protocol v" + major + "." + minor
                              + " is not supported: this plugin speaks v" + Proto::MAJOR + "."
                              + Proto::MINOR);
                Send(buf);
                Drop("protocol version mismatch");
                return;
            }
            handshaken = true;
            status = "serving a worker";
            return;
        }
        if (length < 4) {
            // every command starts with a request id: skip what is there and count it
            if (length > 0) client.ReadRaw(length);
            malformed++;
            return;
        }
        uint reqId = client.ReadUint32();
        uint rest = length - 4;
        MemoryBuffer buf(0);
        if (type == Proto::PING && rest == 8) {
            uint64 clientTime = client.ReadUint64();
            Proto::Pong(buf, reqId, clientTime, uint64(Time::Stamp) * 1000);
        } else if ((type == Proto::RESPAWN || type == Proto::RESTART) && rest == 0) {
            bool toStart = type == Proto::RESTART;
            if (!Game::Respawn(toStart)) {
                Proto::Result(buf, reqId, Proto::UNSUPPORTED, "no rules script in this mode: use the respawn input");
            } else {
                if (!toStart) {
                    respawns++;
                    pendingFlags |= Proto::F_RESPAWN_THIS_FRAME;
                    Proto::Event(buf, Proto::EV_RESPAWN, episode, lastRaceTime, respawns, "");
                }
                Proto::Result(buf, reqId, Proto::OK, toStart ? "restarted" : "respawned");
            }
        } else if (type == Proto::LOAD_MAP && rest >= 4) {
            uint16 n = client.ReadUint16();
            string path = client.ReadRaw(n);
            uint16 m = client.ReadUint16();
            client.ReadRaw(m); // mode: local play only in v1
            if (loading) {
                Proto::Result(buf, reqId, Proto::WRONG_STATE, "a map is already loading");
            } else {
                loadPath = path;
                loadReqId = reqId;
                loading = true;
                startnew(LoadMapTask);
                return; // the RESULT comes when the map is ready
            }
        } else if (type == Proto::GET_TRACK && rest == 0) {
            WriteTrack(buf, reqId);
        } else if (type == Proto::SET_CONFIG && rest >= 2) {
            uint16 n = client.ReadUint16();
            string error = "";
            for (uint i = 0; i < n; i++) {
                uint16 key = client.ReadUint16();
                int value = client.ReadInt32();
                if (key == Proto::KEY_STREAM_EVERY && value >= 1) streamEvery = value;
                else if (key == Proto::KEY_HEARTBEAT_MS && value >= 50) heartbeatMs = value;
                else error = "bad config key " + key + " or value " + value;
            }
            Proto::Result(buf, reqId, error == "" ? Proto::OK : Proto::BAD_ARGS, error);
        } else if (type == Proto::BYE && rest == 0) {
            Proto::Result(buf, reqId, Proto::OK, "bye");
            Send(buf);
            Drop("bye");
            return;
        } else if (type == Proto::SET_INPUT || type == Proto::STEP) {
            if (rest > 0) client.ReadRaw(rest);
            if (type == Proto::SET_INPUT && reqId == 0) return;
            Proto::Result(buf, reqId, Proto::UNSUPPORTED, "simulator only: drive the game with a virtual gamepad");
        } else {
            if (rest > 0) client.ReadRaw(rest); // unknown type or bad size: skip it by length
            malformed++;
            return;
        }
        Send(buf);
    }

    void WriteTrack(MemoryBuffer@ buf, uint reqId) {
        CTrackMania@ app = Game::App();
        CSmArenaClient@ pg = Game::Playground();
        string uid = Game::MapUid();
        string name = (app !is null && app.RootMap !is null) ? string(app.RootMap.MapName) : "";
        int authorTime = (app !is null && app.RootMap !is null) ? int(app.RootMap.TMObjective_AuthorTime) : 0;
        array<uint> picked;
        if (pg !is null) {
            for (uint i = 0; i < pg.Arena.MapLandmarks.Length; i++) {
                if (Game::LandmarkKind(pg.Arena.MapLandmarks[i]) >= 0) picked.InsertLast(i);
            }
        }
        // TRACK: req_id, uid, name, author time, n, n x (u16 index, u16 order, u8 kind, 3f),
        // f32 width, u32 points (the game knows no centerline: 0 and 0)
        Proto::Header(buf, Proto::TRACK, 4 + Proto::StrSize(uid) + Proto::StrSize(name) + 4 + 2
                      + picked.Length * 17 + 4 + 4);
        buf.Write(uint32(reqId));
        Proto::Str(buf, uid);
        Proto::Str(buf, name);
        buf.Write(int32(authorTime));
        buf.Write(uint16(picked.Length));
        for (uint k = 0; k < picked.Length; k++) {
            CGameScriptMapLandmark@ lm = pg.Arena.MapLandmarks[picked[k]];
            buf.Write(uint16(picked[k]));
            buf.Write(uint16(lm.Order));
            buf.Write(uint8(Game::LandmarkKind(lm)));
            Proto::Vec(buf, lm.Position);
        }
        buf.Write(0.0f);
        buf.Write(uint32(0));
    }

    void StreamState() {
        Snapshot@ s = Game::Read();
        MemoryBuffer buf(0);
        if (!s.spawned) {
            if (wasSpawned) {
                wasSpawned = false;
            }
            if (Time::Now - lastHeartbeat >= uint64(heartbeatMs)) {
                lastHeartbeat = Time::Now;
                WriteState(buf, s);
                Send(buf);
            }
            return;
        }
        string uid = Game::MapUid();
        if (uid != mapUid) {
            if (mapUid != "") Proto::Event(buf, Proto::EV_MAP_UNLOADED, episode, 0, 0, "");
            mapUid = uid;
            Proto::Event(buf, Proto::EV_MAP_LOADED, episode, 0, 0, uid);
        }
        // a new episode: the race clock went back (restart, or a new spawn at the start)
        if (!wasSpawned || s.raceTime < lastRaceTime - 100) {
            episode++;
            cpPassed = 0;
            lastCpTime = 0;
            respawns = 0;
            wasFinished = false;
            lastLandmark = s.respawnLandmark;
            Proto::Event(buf, Proto::EV_EPISODE_START, episode, s.raceTime, 0, "");
        }
        wasSpawned = true;
        if (s.respawnLandmark != lastLandmark) {
            lastLandmark = s.respawnLandmark;
            if (Game::IsCheckpoint(s.respawnLandmark)) {
                cpPassed++;
                lastCpTime = s.raceTime;
                pendingFlags |= Proto::F_CP_THIS_FRAME;
                Proto::Event(buf, Proto::EV_CHECKPOINT, episode, s.raceTime, cpPassed, "");
            }
        }
        if (s.finished && !wasFinished) {
            Proto::Event(buf, Proto::EV_FINISH, episode, s.raceTime, cpPassed, "");
        }
        wasFinished = s.finished;
        lastRaceTime = s.raceTime;
        frame++;
        if (frame % uint(streamEvery) == 0 || buf.GetSize() > 0) {
            WriteState(buf, s);
            pendingFlags = 0;
        }
        if (buf.GetSize() > 0) Send(buf);
    }

    void WriteState(MemoryBuffer@ buf, Snapshot@ s) {
        seq++;
        Proto::Header(buf, Proto::STATE, Proto::STATE_SIZE);
        buf.Write(uint32(seq));
        buf.Write(uint32(episode));
        buf.Write(uint64(Time::Stamp) * 1000);
        buf.Write(int32(s.gameTime));
        buf.Write(int32(s.raceTime));
        buf.Write(uint32(s.flags | pendingFlags));
        Proto::Vec(buf, s.pos);
        Proto::Vec(buf, s.vel);
        buf.Write(s.yaw);
        buf.Write(s.pitch);
        buf.Write(s.roll);
        buf.Write(s.frontSpeed);
        buf.Write(s.sideSpeed);
        buf.Write(s.rpm);
        buf.Write(s.steer);
        buf.Write(s.gas);
        buf.Write(s.brake);
        buf.Write(s.gear);
        buf.Write(s.wheels);
        for (uint i = 0; i < 4; i++) buf.Write(s.surfaces[i]);
        buf.Write(uint16(cpPassed));
        buf.Write(uint16(Game::CheckpointTotal()));
        buf.Write(uint16(0)); // lap: multi-lap maps are counted by checkpoints in v1
        buf.Write(uint16(1));
        buf.Write(uint16(respawns));
        buf.Write(int32(lastCpTime));
    }
}

Bridge g_bridge;

// LOAD_MAP: back to the menu, wait until no playground is left, play the map, wait for it
void LoadMapTask() {
    CTrackMania@ app = Game::App();
    uint16 status = Proto::OK;
    string message = "";
    if (app is null) {
        status = Proto::FAILED;
        message = "no game";
    } else {
        app.BackToMainMenu();
        uint64 deadline = Time::Now + 30000;
        while ((app.CurrentPlayground !is null || app.ManiaTitleControlScriptAPI is null) && Time::Now < deadline) yield();
        app.ManiaTitleControlScriptAPI.PlayMap(g_bridge.loadPath, "TrackMania/TM_PlayMap_Local", "");
        deadline = Time::Now + 60000;
        while (VehicleState::ViewingPlayerState() is null && Time::Now < deadline) yield();
        if (VehicleState::ViewingPlayerState() is null) {
            status = Proto::FAILED;
            message = "the map did not load within 60 s: " + g_bridge.loadPath;
        } else {
            message = Game::MapUid();
        }
    }
    MemoryBuffer buf(0);
    Proto::Result(buf, g_bridge.loadReqId, status, message);
    g_bridge.Send(buf);
    g_bridge.loading = false;
}
