using System.Runtime.InteropServices;

namespace Plover.Transport.Ucx;

/// <summary>
/// The ucp functions Plover calls (libucp.so.0 from UCX, Debian package libucx0). The parameter structs are
/// filled by field offsets checked against UCX 1.13's ucp.h (a C program printed offsetof for each); every struct
/// is passed with a field mask, so later UCX versions, which only append fields, read the same layout.
/// </summary>
internal static unsafe partial class UcxNative
{
    private const string Lib = "libucp.so.0";

    public const uint ApiMajor = 1, ApiMinor = 13;
    public const int UCS_OK = 0, UCS_INPROGRESS = 1, UCS_ERR_BUSY = -15;

    // ucp_params_t (80 bytes): field_mask@0, features@8
    public const ulong UCP_PARAM_FIELD_FEATURES = 1;
    public const ulong UCP_FEATURE_RMA = 1 << 1, UCP_FEATURE_WAKEUP = 1 << 4, UCP_FEATURE_STREAM = 1 << 5;
    // ucp_worker_params_t (200 bytes): field_mask@0, thread_mode@8, events@144
    public const ulong UCP_WORKER_PARAM_FIELD_THREAD_MODE = 1, UCP_WORKER_PARAM_FIELD_EVENTS = 1 << 2;
    public const int UCS_THREAD_MODE_MULTI = 2;
    public const uint UCP_WAKEUP_RMA = 1, UCP_WAKEUP_TX = 1 << 10, UCP_WAKEUP_RX = 1 << 11;
    // ucp_ep_params_t (104 bytes): field_mask@0, address@8, err_mode@16, err_handler {cb@24, arg@32}
    public const ulong UCP_EP_PARAM_FIELD_REMOTE_ADDRESS = 1, UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE = 1 << 1, UCP_EP_PARAM_FIELD_ERR_HANDLER = 1 << 2;
    public const int UCP_ERR_HANDLING_MODE_PEER = 1;
    // ucp_request_param_t (72 bytes): op_attr_mask@0 (u32), flags@4 (u32), memh@64
    public const uint UCP_OP_ATTR_FIELD_FLAGS = 1 << 4, UCP_OP_ATTR_FIELD_MEMH = 1 << 8;
    public const uint UCP_EP_CLOSE_FLAG_FORCE = 1;
    // ucp_mem_map_params_t (40 bytes): field_mask@0, address@8, length@16
    public const ulong UCP_MEM_MAP_PARAM_FIELD_ADDRESS = 1, UCP_MEM_MAP_PARAM_FIELD_LENGTH = 1 << 1;

    public const int ParamsBytes = 256;   // every struct is passed in a zeroed block this large

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int ucp_config_read(string? envPrefix, string? filename, out nint config);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int ucp_config_modify(nint config, string name, string value);
    [LibraryImport(Lib)]
    public static partial void ucp_config_release(nint config);
    [LibraryImport(Lib)]
    public static partial int ucp_init_version(uint major, uint minor, byte* parameters, nint config, out nint context);
    [LibraryImport(Lib)]
    public static partial void ucp_cleanup(nint context);

    [LibraryImport(Lib)]
    public static partial int ucp_worker_create(nint context, byte* parameters, out nint worker);
    [LibraryImport(Lib)]
    public static partial void ucp_worker_destroy(nint worker);
    [LibraryImport(Lib)]
    public static partial uint ucp_worker_progress(nint worker);
    [LibraryImport(Lib)]
    public static partial int ucp_worker_get_efd(nint worker, out int fd);
    [LibraryImport(Lib)]
    public static partial int ucp_worker_arm(nint worker);
    [LibraryImport(Lib)]
    public static partial int ucp_worker_signal(nint worker);
    [LibraryImport(Lib)]
    public static partial int ucp_worker_get_address(nint worker, out nint address, out nuint length);
    [LibraryImport(Lib)]
    public static partial void ucp_worker_release_address(nint worker, nint address);

    [LibraryImport(Lib)]
    public static partial int ucp_ep_create(nint worker, byte* parameters, out nint ep);
    [LibraryImport(Lib)]
    public static partial nint ucp_ep_close_nbx(nint ep, byte* param);

    [LibraryImport(Lib)]
    public static partial nint ucp_stream_send_nbx(nint ep, byte* buffer, nuint count, byte* param);
    [LibraryImport(Lib)]
    public static partial nint ucp_stream_recv_data_nb(nint ep, out nuint length);
    [LibraryImport(Lib)]
    public static partial void ucp_stream_data_release(nint ep, nint data);

    [LibraryImport(Lib)]
    public static partial int ucp_request_check_status(nint request);
    [LibraryImport(Lib)]
    public static partial void ucp_request_free(nint request);

    [LibraryImport(Lib)]
    public static partial int ucp_mem_map(nint context, byte* parameters, out nint memh);
    [LibraryImport(Lib)]
    public static partial int ucp_mem_unmap(nint context, nint memh);
    [LibraryImport(Lib)]
    public static partial int ucp_rkey_pack(nint context, nint memh, out nint buffer, out nuint size);
    [LibraryImport(Lib)]
    public static partial void ucp_rkey_buffer_release(nint buffer);
    [LibraryImport(Lib)]
    public static partial int ucp_ep_rkey_unpack(nint ep, byte* buffer, out nint rkey);
    [LibraryImport(Lib)]
    public static partial void ucp_rkey_destroy(nint rkey);
    [LibraryImport(Lib)]
    public static partial nint ucp_put_nbx(nint ep, byte* buffer, nuint count, ulong remoteAddress, nint rkey, byte* param);
    [LibraryImport(Lib)]
    public static partial nint ucp_ep_flush_nbx(nint ep, byte* param);

    [LibraryImport("libucs.so.0")]
    public static partial nint ucs_status_string(int status);

    /// <summary>A ucs_status_ptr_t that carries an error (UCS_PTR_IS_ERR: the pointer is a small negative number).</summary>
    public static bool IsError(nint p) => p < 0 && p > -1000;

    public static string Describe(int status) =>
        Marshal.PtrToStringUTF8(ucs_status_string(status)) is { } s ? $"{s} ({status})" : $"status {status}";

    public static void Check(int status, string what)
    {
        if (status != UCS_OK) throw new IOException($"UCX {what} failed: {Describe(status)}");
    }
}
