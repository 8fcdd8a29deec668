using System.Buffers.Text;
using Microsoft.Win32.SafeHandles;

namespace Plover.Idle;

/// <summary>
/// Per-thread CPU demand from /proc/self/task/TID/schedstat: time on a CPU plus time spent runnable waiting for
/// one (its first two fields, ns; Linux, CONFIG_SCHED_INFO). The wait counts because a vCPU that wants to run but
/// is kept off the CPU (the host's cores are busy, with the other replica on the same machine, say) is not idle:
/// counting only run time would call a starved guest idle and cut it off in the middle of its work.
/// Reads with pread into a reused buffer: no allocation per sample after a thread's first read.
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
            var text = _buffer.AsSpan(0, n);
            if (!Utf8Parser.TryParse(text, out long run, out int used) || used >= text.Length || text[used] != ' ')
                return false;
            if (!Utf8Parser.TryParse(text[(used + 1)..], out long wait, out _))
                return false;
            nanoseconds = run + wait;
            return true;
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
