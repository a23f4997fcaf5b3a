// EVO RL bridge: streams the car and the race to a rollout worker (protocol v1) and takes its
// commands (respawn, restart, load a map, track info). Controls go through a virtual gamepad
// on the worker's side: no plugin API sets the car's inputs.

[Setting category="Bridge" name="Listen address" description="127.0.0.1 keeps the bridge on this PC"]
string Setting_Host = "127.0.0.1";

[Setting category="Bridge" name="Port" min=1024 max=65535]
int Setting_Port = 9400;

[Setting category="Bridge" name="Send STATE every N frames" min=1 max=10]
int Setting_StreamEvery = 1;

[Setting category="Bridge" name="Show status window"]
bool Setting_ShowWindow = true;

void Main() {
    g_bridge.streamEvery = Setting_StreamEvery;
    while (!g_bridge.Listen(Setting_Host, uint16(Setting_Port))) {
        print("EVO RL bridge: " + g_bridge.status + "; retrying in 5 s");
        sleep(5000);
    }
    print("EVO RL bridge: " + g_bridge.status);
    while (true) {
        g_bridge.Tick();
        yield();
    }
}

void OnDisabled() {
    g_bridge.Close();
}

void OnDestroyed() {
    g_bridge.Close();
}

void RenderInterface() {
    if (!Setting_ShowWindow) return;
    if (UI::Begin("EVO RL bridge", Setting_ShowWindow, UI::WindowFlags::AlwaysAutoResize)) {
        UI::Text("protocol v" + Proto::MAJOR + "." + Proto::MINOR + ", port " + Setting_Port);
        UI::Text(g_bridge.status);
        UI::Text("episode " + g_bridge.episode + ", states sent " + g_bridge.seq);
        UI::Text("checkpoints " + g_bridge.cpPassed + ", malformed commands " + g_bridge.malformed);
    }
    UI::End();
}
