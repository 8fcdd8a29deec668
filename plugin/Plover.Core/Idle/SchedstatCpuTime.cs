using System.Buffers.Text;
using Microsoft.Win32.SafeHandles;

namespace Plover.Idle;

/// <summary>
/// Per-thread CPU time from /proc/self/task/TID/schedstat (first field: time on CPU in ns; Linux, needs
/// CONFIG_SCHED_INFO). Reads with pread into a reused buffer: no allocation per sample after a thread's first read.
/// </summary>
public sealed class SchedstatCpuTime : ICpuTimeSource, IDisposable
{
    private readonly Dictionary<int, SafeFileHandle> _files = new();
    private readonly byte[] _buffer = new byte[128];

    public static string PathOf(int threadId) => $"/proc/self/task/{threadId}/schedstat";

    public bool TryRead(int threadId, out long nanoseconds)
    {
        nanoseconds = 0;
        try
        {
            if (!_files.TryGetValue(threadId, out var file))
            {
                file = File.OpenHandle(PathOf(threadId), FileMode.Open, FileAccess.Read);
                _files[threadId] = file;
            }
            int n = RandomAccess.Read(file, _buffer, 0);
            int space = Array.IndexOf(_buffer, (byte)' ', 0, n);
            return space > 0 && Utf8Parser.TryParse(_buffer.AsSpan(0, space), out nanoseconds, out _);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (_files.Remove(threadId, out var stale)) stale.Dispose();
            return false;
        }
    }

    public void Dispose()
    {
        foreach (var f in _files.Values) f.Dispose();
        _files.Clear();
    }
}
