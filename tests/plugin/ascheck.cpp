// Compile AngelScript files as one module and report every error: the plugin's compile check.
// Usage: ascheck FILE.as... ; exit 0 when the module builds, 1 with the compiler's messages.
// Built by tests/unit/test_plugin_compile.py against Debian's angelscript-dev.
#include <angelscript.h>
#include <angelscript/scriptarray.h>
#include <angelscript/scriptbuilder.h>
#include <angelscript/scriptstdstring.h>

#include <cstdio>

using namespace AngelScript;

#include <string>

static int errors = 0;

// OpenPlanet's spelling of the string and array add-ons (Length, InsertLast, Find), on top
// of the vanilla add-ons' (length(), insertLast, find)
static asUINT string_length(const std::string &s) { return static_cast<asUINT>(s.size()); }

static void register_openplanet_names(asIScriptEngine *engine) {
    int r = 0;
    r |= engine->RegisterObjectMethod("string", "uint get_Length() const property",
                                      asFUNCTION(string_length), asCALL_CDECL_OBJLAST);
    r |= engine->RegisterObjectMethod("array<T>", "uint get_Length() const property",
                                      asMETHOD(CScriptArray, GetSize), asCALL_THISCALL);
    r |= engine->RegisterObjectMethod("array<T>", "void InsertLast(const T&in)",
                                      asMETHODPR(CScriptArray, InsertLast, (void *), void),
                                      asCALL_THISCALL);
    r |= engine->RegisterObjectMethod("array<T>", "int Find(const T&in) const",
                                      asMETHODPR(CScriptArray, Find, (void *) const, int),
                                      asCALL_THISCALL);
    if (r < 0) std::printf("ascheck: registering OpenPlanet names failed (%d)\n", r);
}

static void on_message(const asSMessageInfo *msg, void *) {
    const char *kind = msg->type == asMSGTYPE_ERROR ? "ERROR" : msg->type == asMSGTYPE_WARNING ? "WARN" : "INFO";
    if (msg->type == asMSGTYPE_ERROR) errors++;
    std::printf("%s:%d:%d: %s: %s\n", msg->section, msg->row, msg->col, kind, msg->message);
}

int main(int argc, char **argv) {
    asIScriptEngine *engine = asCreateScriptEngine();
    engine->SetMessageCallback(asFUNCTION(on_message), nullptr, asCALL_CDECL);
    // OpenPlanet allows &inout references to primitives (e.g. UI::Begin(title, open))
    engine->SetEngineProperty(asEP_ALLOW_UNSAFE_REFERENCES, true);
    RegisterStdString(engine);
    RegisterScriptArray(engine, true);
    register_openplanet_names(engine);
    CScriptBuilder builder;
    if (builder.StartNewModule(engine, "plugin") < 0) return 2;
    for (int i = 1; i < argc; i++) {
        if (builder.AddSectionFromFile(argv[i]) < 0) {
            std::printf("%s: cannot read\n", argv[i]);
            return 2;
        }
    }
    int r = builder.BuildModule();
    engine->ShutDownAndRelease();
    if (r < 0 || errors > 0) {
        std::printf("compile check failed: %d error(s)\n", errors);
        return 1;
    }
    std::printf("compile check passed\n");
    return 0;
}
