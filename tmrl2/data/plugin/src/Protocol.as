// EVO RL game bridge, protocol v1: message writers.
// The bytes must equal tmrl2/bridge/protocol.py's `encode` (little-endian, packed); the
// constants below are checked against that module by tests/unit/test_plugin_compile.py, and
// tests/data/protocol_v1_golden.json holds golden streams to compare a capture with.

namespace Proto {
    const uint16 MAJOR = 1;
    const uint16 MINOR = 0;
    const uint STATE_SIZE = 108;
    const uint MAX_PAYLOAD = 1048576;

    // message types
    const uint16 HELLO = 0x0001;
    const uint16 HELLO_ACK = 0x0002;
    const uint16 STATE = 0x0010;
    const uint16 EVENT = 0x0011;
    const uint16 TRACK = 0x0020;
    const uint16 RESULT = 0x0030;
    const uint16 PONG = 0x0031;
    const uint16 PING = 0x0100;
    const uint16 RESPAWN = 0x0101;
    const uint16 RESTART = 0x0102;
    const uint16 LOAD_MAP = 0x0103;
    const uint16 GET_TRACK = 0x0104;
    const uint16 SET_CONFIG = 0x0105;
    const uint16 BYE = 0x0106;
    const uint16 SET_INPUT = 0x0200;
    const uint16 STEP = 0x0201;

    // caps: what this plugin can do (no SET_INPUT, STEP, IMAGE: simulator only)
    const uint CAP_RESPAWN = 1;
    const uint CAP_RESTART = 2;
    const uint CAP_LOAD_MAP = 4;
    const uint CAP_TRACK_INFO = 8;
    const uint CAP_CHECKPOINTS = 128;
    const uint CAPS = CAP_RESPAWN | CAP_RESTART | CAP_LOAD_MAP | CAP_TRACK_INFO | CAP_CHECKPOINTS;

    // STATE flags
    const uint F_SPAWNED = 1;
    const uint F_RACE_RUNNING = 2;
    const uint F_FINISHED = 4;
    const uint F_GROUND_CONTACT = 8;
    const uint F_TOP_CONTACT = 16;
    const uint F_TURBO = 32;
    const uint F_WHEELS_BURNING = 64;
    const uint F_IN_WATER = 128;
    const uint F_MENU_OPEN = 256;
    const uint F_PLAYGROUND_LOADED = 512;
    const uint F_CP_THIS_FRAME = 1024;
    const uint F_RESPAWN_THIS_FRAME = 2048;

    // EVENT kinds
    const uint16 EV_EPISODE_START = 1;
    const uint16 EV_CHECKPOINT = 2;
    const uint16 EV_FINISH = 3;
    const uint16 EV_RESPAWN = 4;
    const uint16 EV_MAP_LOADED = 5;
    const uint16 EV_MAP_UNLOADED = 6;

    // RESULT status
    const uint16 OK = 0;
    const uint16 UNSUPPORTED = 1;
    const uint16 WRONG_STATE = 2;
    const uint16 BAD_ARGS = 3;
    const uint16 FAILED = 4;
    const uint16 VERSION = 5;

    // SET_CONFIG keys
    const uint16 KEY_STREAM_EVERY = 1;
    const uint16 KEY_HEARTBEAT_MS = 2;

    // landmark kinds in TRACK
    const uint8 LM_SPAWN = 0;
    const uint8 LM_CHECKPOINT = 1;
    const uint8 LM_LINKED_CHECKPOINT = 2;
    const uint8 LM_START_FINISH = 3;
    const uint8 LM_FINISH = 4;

    // surface ids in STATE
    const uint8 SURF_NONE = 0;
    const uint8 SURF_ROAD = 1;
    const uint8 SURF_DIRT = 2;
    const uint8 SURF_GRASS = 3;
    const uint8 SURF_ICE = 4;
    const uint8 SURF_WATER = 5;
    const uint8 SURF_PLASTIC = 6;
    const uint8 SURF_SNOW = 7;
    const uint8 SURF_WOOD = 8;
    const uint8 SURF_METAL = 9;
    const uint8 SURF_OTHER = 255;

    uint StrSize(const string &in s) {
        return 2 + s.Length;
    }

    void Header(MemoryBuffer@ buf, uint16 type, uint length) {
        buf.Write(type);
        buf.Write(uint16(0));
        buf.Write(uint32(length));
    }

    // u16 byte length + UTF-8 bytes (OpenPlanet strings are UTF-8; Length counts bytes)
    void Str(MemoryBuffer@ buf, const string &in s) {
        buf.Write(uint16(s.Length));
        buf.Write(s);
    }

    void Hello(MemoryBuffer@ buf, const string &in serverVersion, const string &in gameVersion) {
        Header(buf, HELLO, 4 + 8 + StrSize(serverVersion) + StrSize(gameVersion) + 2);
        buf.Write(uint8(0x45)); // E
        buf.Write(uint8(0x56)); // V
        buf.Write(uint8(0x4F)); // O
        buf.Write(uint8(0x42)); // B
        buf.Write(MAJOR);
        buf.Write(MINOR);
        buf.Write(uint32(CAPS));
        Str(buf, serverVersion);
        Str(buf, gameVersion);
        buf.Write(uint16(STATE_SIZE));
    }

    void Result(MemoryBuffer@ buf, uint reqId, uint16 status, const string &in message) {
        Header(buf, RESULT, 4 + 2 + StrSize(message));
        buf.Write(uint32(reqId));
        buf.Write(status);
        Str(buf, message);
    }

    void Pong(MemoryBuffer@ buf, uint reqId, uint64 clientTime, uint64 wallMs) {
        Header(buf, PONG, 4 + 8 + 8);
        buf.Write(uint32(reqId));
        buf.Write(clientTime);
        buf.Write(wallMs);
    }

    void Event(MemoryBuffer@ buf, uint16 kind, uint episode, int raceTime, uint arg,
               const string &in mapUid) {
        bool withUid = kind == EV_MAP_LOADED;
        Header(buf, EVENT, 2 + 4 + 4 + 4 + (withUid ? StrSize(mapUid) : 0));
        buf.Write(kind);
        buf.Write(uint32(episode));
        buf.Write(int32(raceTime));
        buf.Write(uint32(arg));
        if (withUid) Str(buf, mapUid);
    }

    void Vec(MemoryBuffer@ buf, const vec3 &in v) {
        buf.Write(v.x);
        buf.Write(v.y);
        buf.Write(v.z);
    }
}
