using System.Diagnostics;

namespace Plover.Sync;

/// <summary>
/// Runs one job over a list of pages on every core: <see cref="Hash"/>, CityHash64 of each B-byte sub-block of the
/// divergent pages (<see cref="SubBlockKernel"/>: 8 sub-blocks per AVX-512 pass where the CPU has it; 4096 / B
/// hashes per page in address order, pages in list order), or <see cref="Copy"/>, the pages into a buffer (the
/// primary's snapshot of the union before it resumes early). A fixed pool of Threads - 1
/// workers is created once and the calling thread works too; pages are claimed in batches of 16. A worker joins
/// only a job that is still open and the caller waits only for workers that joined (one that was not scheduled in
/// time is not waited for), as in Hashing.PageHasher. No allocation per call; calls are serialised.
/// </summary>
internal sealed unsafe class PageWorkers : IDisposable
{
    private const long BatchPages = 16;
    private const long SpinMicroseconds = 50;
    private const long Closed = 1L << 31;
    private const long JoinedMask = Closed - 1;

    private readonly Worker[] _workers;
    private readonly Lock _callLock = new();
    private volatile bool _disposed;

    // the current job (written before it is opened, read-only for workers)
    private IPageSource _source = null!;
    private ulong* _pages;
    private long _count;
    private int _blockBytes;     // 0: copy whole pages to _copyTo
    private ulong* _out;
    private byte* _copyTo;
    private long _next;          // next page to claim
    private long _jobState;      // generation << 32 | Closed | joined workers
    private int _generation;
    private Exception? _workerError;

    public PageWorkers(int threads)
    {
        Threads = threads <= 0 ? Environment.ProcessorCount : threads;
        _workers = new Worker[Threads - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            _workers[i] = new Worker();
            _workers[i].Thread = new Thread(WorkerLoop) { IsBackground = true, Name = $"plover-pages-{i + 1}" };
            _workers[i].Thread!.Start(_workers[i]);
        }
    }

    public int Threads { get; }

    /// <summary>Writes 4096 / blockBytes hashes per page of pages[0 .. count) into output.</summary>
    public void Hash(IPageSource source, ulong* pages, long count, int blockBytes, ulong* output)
    {
        if (blockBytes <= 0) throw new ArgumentOutOfRangeException(nameof(blockBytes));
        RunJob(source, pages, count, blockBytes, output, null);
    }

    /// <summary>Copies page pages[i] to destination + i * 4096, for every i in [0, count).</summary>
    public void Copy(IPageSource source, ulong* pages, long count, byte* destination) =>
        RunJob(source, pages, count, 0, null, destination);

    private void RunJob(IPageSource source, ulong* pages, long count, int blockBytes, ulong* output, byte* copyTo)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (count <= 0) return;
        lock (_callLock)
        {
            _source = source;
            _pages = pages;
            _count = count;
            _blockBytes = blockBytes;
            _out = output;
            _copyTo = copyTo;
            _next = 0;
            if (_workers.Length == 0 || count <= BatchPages)
            {
                Run();
                return;
            }
            _workerError = null;
            _generation++;
            Volatile.Write(ref _jobState, (long)_generation << 32);
            foreach (var w in _workers)
                if (Interlocked.CompareExchange(ref w.Sleeping, 0, 1) == 1) w.Wake.Release();
            Run();
            long state = Volatile.Read(ref _jobState);
            while (Interlocked.CompareExchange(ref _jobState, state | Closed, state) is var seen && seen != state) state = seen;
            var wait = new SpinWait();
            while ((Volatile.Read(ref _jobState) & JoinedMask) != 0) wait.SpinOnce(sleep1Threshold: -1);
            if (_workerError is { } e) throw new InvalidOperationException("a page worker failed", e);
        }
    }

    private void Run()
    {
        int perPage = _blockBytes == 0 ? 0 : GuestRamBlock.PageSize / _blockBytes;
        while (true)
        {
            long start = Interlocked.Add(ref _next, BatchPages) - BatchPages;
            if (start >= _count) return;
            long end = Math.Min(start + BatchPages, _count);
            for (long i = start; i < end; i++)
            {
                if (_blockBytes == 0)
                    Buffer.MemoryCopy(_source.PageAddress(_pages[i]), _copyTo + i * GuestRamBlock.PageSize, GuestRamBlock.PageSize, GuestRamBlock.PageSize);
                else
                    SubBlockKernel.HashPage(_source.PageAddress(_pages[i]), _blockBytes, _out + i * perPage);
            }
        }
    }

    private bool TryJoin(int generation)
    {
        long state = Volatile.Read(ref _jobState);
        while ((int)(state >> 32) == generation && (state & Closed) == 0)
        {
            long seen = Interlocked.CompareExchange(ref _jobState, state + 1, state);
            if (seen == state) return true;
            state = seen;
        }
        return false;
    }

    private void WorkerLoop(object? o)
    {
        var me = (Worker)o!;
        int seen = 0;
        while (true)
        {
            long spinUntil = Stopwatch.GetTimestamp() + Stopwatch.Frequency * SpinMicroseconds / 1_000_000;
            while ((int)(Volatile.Read(ref _jobState) >> 32) == seen && !_disposed)
            {
                if (Stopwatch.GetTimestamp() < spinUntil) { Thread.SpinWait(20); continue; }
                Interlocked.Exchange(ref me.Sleeping, 1);
                if ((int)(Volatile.Read(ref _jobState) >> 32) != seen || _disposed)
                {
                    if (Interlocked.CompareExchange(ref me.Sleeping, 0, 1) == 1) break;
                }
                me.Wake.Wait();
            }
            if (_disposed) return;
            seen = (int)(Volatile.Read(ref _jobState) >> 32);
            if (!TryJoin(seen)) continue;
            try { Run(); }
            catch (Exception e) { _workerError = e; }
            Interlocked.Decrement(ref _jobState);
        }
    }

    public void Dispose()
    {
        lock (_callLock)
        {
            if (_disposed) return;
            _disposed = true;
        }
        foreach (var w in _workers)
        {
            if (Interlocked.CompareExchange(ref w.Sleeping, 0, 1) == 1) w.Wake.Release();
            w.Thread?.Join();
        }
    }

    private sealed class Worker
    {
        public int Sleeping;
        public readonly SemaphoreSlim Wake = new(0);
        public Thread? Thread;
    }
}
