using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Plover.Interop;
using Plover.Native.Host;

namespace Plover.Native.Exports;

/// <summary>int64_t plover_abi_layout(const char *type, const char *field): sizeof(type) when field is NULL,
/// offsetof(type, field) otherwise, as the C# mirror lays them out; -1 for an unknown name. For the native
/// abi_layout_test, which compares it with the C compiler's view of plover_abi.h.</summary>
internal static unsafe class AbiLayoutExports
{
    [UnmanagedCallersOnly(EntryPoint = "plover_abi_layout", CallConvs = [typeof(CallConvCdecl)])]
    public static long Layout(byte* type, byte* field)
    {
        try
        {
            string? typeName = NativeText.Read(type);
            return typeName == null ? -1 : AbiLayout.Query(typeName, NativeText.Read(field));
        }
        catch (Exception)
        {
            return -1;
        }
    }
}
