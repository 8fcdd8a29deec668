using System.Buffers;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Plover.Native.Host;

/// <summary>Builds one admin reply line: {"ok":true,...} or {"ok":false,"error":"..."} (Utf8JsonWriter: no
/// reflection, NativeAOT-safe).</summary>
internal sealed class AdminReply : IDisposable
{
    private static readonly JsonWriterOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly ArrayBufferWriter<byte> _buffer = new();

    public AdminReply(bool ok = true)
    {
        Json = new Utf8JsonWriter(_buffer, Options);
        Json.WriteStartObject();
        Json.WriteBoolean("ok", ok);
    }

    public Utf8JsonWriter Json { get; }

    public static string Error(string error)
    {
        using var reply = new AdminReply(ok: false);
        reply.Json.WriteString("error", error);
        return reply.Finish();
    }

    public string Finish()
    {
        Json.WriteEndObject();
        Json.Flush();
        return Encoding.UTF8.GetString(_buffer.WrittenSpan);
    }

    public void Dispose() => Json.Dispose();
}
