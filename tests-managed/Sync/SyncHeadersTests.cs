using Google.Protobuf;
using Google.Protobuf.Reflection;
using Plover.Sync;
using Plover.Wire;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>SyncHeaders reuses one instance per type: a field it forgets to reset would leak from one frame into the next.</summary>
public sealed class SyncHeadersTests
{
    /// <summary>Every field of message set to something other than its default.</summary>
    private static T Full<T>() where T : IMessage<T>, new()
    {
        var m = new T();
        foreach (var f in m.Descriptor.Fields.InFieldNumberOrder())
        {
            object value = f.FieldType switch
            {
                FieldType.Bool => true,
                FieldType.UInt64 => 7UL,
                FieldType.Int64 => 7L,
                FieldType.UInt32 => 7U,
                FieldType.Int32 => 7,
                FieldType.Enum => Enum.ToObject(f.EnumType.ClrType, 1),
                _ => throw new NotSupportedException($"{typeof(T).Name}.{f.Name}: add {f.FieldType} here"),
            };
            f.Accessor.SetValue(m, value);
        }
        return m;
    }

    private static void ResetsEveryField<T>(Func<SyncHeaders, ReadOnlySpan<byte>, T> parse) where T : IMessage<T>, new()
    {
        var headers = new SyncHeaders();
        var full = Full<T>();
        Assert.Equal(full, parse(headers, full.ToByteArray()));
        Assert.Equal(new T(), parse(headers, ReadOnlySpan<byte>.Empty));   // an all-default header carries no bytes
    }

    [Fact]
    public void EveryHeaderIsResetBeforeTheNextFrame()
    {
        ResetsEveryField((h, b) => h.Bitmap(b));
        ResetsEveryField((h, b) => h.Hashes(b));
        ResetsEveryField((h, b) => h.Pages(b));
        ResetsEveryField((h, b) => h.DeviceState(b));
        ResetsEveryField((h, b) => h.Ack(b));
        ResetsEveryField((h, b) => h.DeviceHashes(b));
        ResetsEveryField((h, b) => h.Disk(b));
    }
}
