using System.Diagnostics;
using System.Numerics;

namespace Plover.Sync;

/// <summary>
/// Runs one job over a list of pages on every core: <see cref="Hash"/>, CityHash64 of each B-byte sub-block of the
/// divergent pages (<see cref="SubBlockKernel"/>: 8 sub-blocks per AVX-512 pass where the CPU has it; 4096 / B
/// hashes per page in address order, pages in list order); <see cref="Copy"/>, the pages into a buffer (the
/// primary's snapshot before it resumes early); or <see cref="Apply"/>, staged pages or sub-blocks into the pages
/// (the backup's apply). A fixed pool of Threads - 1 workers is created once and the calling thread works too; pages
/// are claimed in batches of 16. A worker joins only a job that is still open and the caller waits only for workers
/// that joined (one that was not scheduled in time is not waited for), as in Hashing.PageHasher. No allocation per
/// call; calls are serialised.
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

    private enum Job { Hash, Copy, Apply }

    // the current job (written before it is opened, read-only for workers)
    private Job _job;
    private IPageSource _source = null!;
    private ulong* _pages;
    private long _count;
    private int _blockBytes;     // Hash, Apply with masks: the sub-block size
    private ulong* _out;         // Hash: the hashes
    private byte* _copyTo;       // Copy: the buffer
    private byte* _staged;       // Apply: what is copied into the pages
    private ulong* _masks;       // Apply: per page, the sub-blocks staged (null: whole pages)
    private ulong* _offsets;     // Apply with masks: per page, where its sub-blocks start in _staged
    private int* _differences;   // Apply: per page, bytes and 64-byte blocks that differed before the copy (or null)
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
        lock (_callLock)
        {
            _job = Job.Hash;
            _blockBytes = blockBytes;
            _out = output;
            RunJob(source, pages, count);
        }
    }

    /// <summary>Copies page pages[i] to destination + i * 4096, for every i in [0, count).</summary>
    public void Copy(IPageSource source, ulong* pages, long count, byte* destination)
    {
        lock (_callLock)
        {
            _job = Job.Copy;
            _copyTo = destination;
            RunJob(source, pages, count);
        }
    }

    /// <summary>For every i in [0, count): with masks null, copies staged + i * 4096 into page pages[i]; otherwise the
    /// sub-blocks of blockBytes that masks[i] names, in address order, from staged + offsets[i]. With differences
    /// non-null, first counts what the copy changes: differences[2i] bytes and differences[2i + 1] 64-byte blocks.
    /// onEveryCore false: on the calling thread only.</summary>
    public void Apply(IPageSource target, ulong* pages, long count, byte* staged, ulong* masks, ulong* offsets, int blockBytes, int* differences,
                      bool onEveryCore = true)
    {
        if (masks != null && (blockBytes <= 0 || offsets == null)) throw new ArgumentOutOfRangeException(nameof(blockBytes));
        lock (_callLock)
        {
            _job = Job.Apply;
            _staged = staged;
            _masks = masks;
            _offsets = offsets;
            _blockBytes = blockBytes;
            _differences = differences;
            RunJob(target, pages, count, onEveryCore);
        }
    }

    /// <summary>Runs the job whose fields the caller set, holding _callLock.</summary>
    private void RunJob(IPageSource source, ulong* pages, long count, bool onEveryCore = true)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (count <= 0) return;
        _source = source;
        _pages = pages;
        _count = count;
        _next = 0;
        if (!onEveryCore || _workers.Length == 0 || count <= BatchPages)
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

    private void Run()
    {
        int perPage = _job == Job.Hash ? GuestRamBlock.PageSize / _blockBytes : 0;
        while (true)
        {
            long start = Interlocked.Add(ref _next, BatchPages) - BatchPages;
            if (start >= _count) return;
            long end = Math.Min(start + BatchPages, _count);
            for (long i = start; i < end; i++)
            {
                switch (_job)
                {
                    case Job.Hash: SubBlockKernel.HashPage(_source.PageAddress(_pages[i]), _blockBytes, _out + i * perPage); break;
                    case Job.Copy:
                        Buffer.MemoryCopy(_source.PageAddress(_pages[i]), _copyTo + i * GuestRamBlock.PageSize, GuestRamBlock.PageSize, GuestRamBlock.PageSize);
                        break;
                    default: ApplyPage(i); break;
                }
            }
        }
    }

    private void ApplyPage(long i)
    {
        byte* from = _masks == null ? _staged + i * GuestRamBlock.PageSize : _staged + _offsets[i];
        ApplyPage(_source.PageAddress(_pages[i]), from, _masks == null ? 0 : _masks[i], _blockBytes,
                  _differences == null ? null : _differences + 2 * i);
    }

    /// <summary>One page of <see cref="Apply"/>: mask 0 copies a whole page from staged, otherwise the sub-blocks it
    /// names; differences (if not null) receives the bytes and 64-byte blocks that the copy changed.</summary>
    internal static void ApplyPage(byte* page, byte* staged, ulong mask, int blockBytes, int* differences)
    {
        int bytes = 0, blocks = 0;
        if (mask == 0)
        {
            if (differences != null) DivergenceStats.Compare(page, staged, GuestRamBlock.PageSize, ref bytes, ref blocks);
            Buffer.MemoryCopy(staged, page, GuestRamBlock.PageSize, GuestRamBlock.PageSize);
        }
        else
        {
            for (ulong m = mask; m != 0; m &= m - 1)
            {
                byte* to = page + BitOperations.TrailingZeroCount(m) * blockBytes;
                if (differences != null) DivergenceStats.Compare(to, staged, blockBytes, ref bytes, ref blocks);
                Buffer.MemoryCopy(staged, to, blockBytes, blockBytes);
                staged += blockBytes;
            }
        }
        if (differences == null) return;
        differences[0] = bytes;
        differences[1] = blocks;
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
