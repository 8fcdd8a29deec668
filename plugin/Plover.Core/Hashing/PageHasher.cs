using System.Diagnostics;
using System.Numerics;

namespace Plover.Hashing;

/// <summary>
/// Hashes 4 KiB pages with CityHash64 on all cores. A fixed pool of Threads - 1 workers is created once; the
/// calling thread works too. Work is handed out in batches of whole pages (a multiple of 8, so the SIMD kernels
/// always get full groups except at the very end), each thread taking its own contiguous region first and then
/// stealing from the others. Hashes are written in page order, one per selected page. Calls on one instance are
/// serialised; no allocation per call or per page.
/// </summary>
public sealed unsafe class PageHasher : IDisposable
{
    public const int PageSize = 4096;
    public const int MaxThreads = 1024;
    private const int GroupPages = 8;
    private const long MinBatchPages = 8;
    private const long MaxBatchPages = 512;
    private const long SpinMicroseconds = 50; // idle workers spin this long before blocking: back-to-back calls stay cheap

    private readonly WorkerSignal[] _workers;
    private readonly Lock _callLock = new();
    private long[] _prefix = new long[1]; // _prefix[w] = selected pages in bitmap words before w (grown, never shrunk)
    private HashKernel _kernel;
    private volatile bool _disposed;

    // The current job: written by the caller before it opens the job (OpenJob); read-only for workers.
    private byte* _base;
    private ulong* _bitmap;
    private ulong* _out;
    private ulong _pageCount;
    private long _batchPages;
    private long _batchCount;
    private bool _prefetch;
    private HashKernel _jobKernel;
    private Exception? _workerError;

    // Work stealing with home regions: the batches are split into Threads contiguous regions, thread t (caller 0,
    // worker i = i+1) claims from its own region first, then from the others. The same thread keeps hashing the same
    // pages call after call (they stay in its core's cache), and a thread that is late or not scheduled has its
    // region taken by the others. Next-batch counters sit 128 bytes apart (no false sharing).
    private const int CounterStride = 16;
    private readonly long[] _regionNext;

    // Job state shared with the workers: generation (high 32 bits) | Closed | workers inside the job (low 31 bits).
    // A worker joins only an open job of the generation it woke for; the caller closes the job when it runs out
    // of batches and waits only for the workers that joined, never for one that was not scheduled in time.
    private const long Closed = 1L << 31;
    private const long JoinedMask = Closed - 1;
    private long _jobState;
    private int _generation;

    public PageHasher(int threads = 0) : this(threads, HashKernels.Best) { }

    public PageHasher(int threads, HashKernel kernel)
    {
        if (threads < 0 || threads > MaxThreads)
            throw new ArgumentOutOfRangeException(nameof(threads), threads, $"threads must be 0 (all cores) .. {MaxThreads}");
        Kernel = kernel;
        Threads = threads == 0 ? Math.Min(Environment.ProcessorCount, MaxThreads) : threads;
        _regionNext = new long[Threads * CounterStride];
        _workers = new WorkerSignal[Threads - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            _workers[i] = new WorkerSignal { Home = i + 1 };
            var thread = new Thread(WorkerLoop) { IsBackground = true, Name = $"plover-hash-{i + 1}" };
            _workers[i].Thread = thread;
            thread.Start(_workers[i]);
        }
    }

    /// <summary>Threads that hash during a call, the caller included.</summary>
    public int Threads { get; }

    /// <summary>The kernel in use; setting one this CPU or build cannot run throws NotSupportedException.</summary>
    public HashKernel Kernel
    {
        get => _kernel;
        set
        {
            if (!HashKernels.IsSupported(value))
                throw new NotSupportedException($"hash kernel '{HashKernels.Name(value)}' is not supported by this CPU or build");
            lock (_callLock) _kernel = value;
        }
    }

    public HashPrefetch Prefetch { get; set; } = HashPrefetch.Auto;

    /// <summary>With HashPrefetch.Auto, prefetch when a call hashes at least this many bytes: smaller sets are
    /// likely cache-resident, where prefetch costs about 30%.</summary>
    public long PrefetchMinBytes { get; set; } = 4L << 20;

    /// <summary>
    /// Hashes every page selected by <paramref name="dirtyBitmap"/> (bit i of word i/64 = page i; null = every page)
    /// among the <paramref name="pageCount"/> pages at <paramref name="basePtr"/>, writing CityHash64 of each into
    /// <paramref name="hashesOut"/> in page order. Returns the number of hashes written.
    /// </summary>
    public long HashPages(byte* basePtr, ulong pageCount, ulong* dirtyBitmap, ulong* hashesOut)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (pageCount == 0)
            return 0;
        if (basePtr == null)
            throw new ArgumentNullException(nameof(basePtr), "base is null but pageCount > 0");
        if (hashesOut == null)
            throw new ArgumentNullException(nameof(hashesOut));
        if (pageCount > (ulong)(long.MaxValue / PageSize))
            throw new ArgumentOutOfRangeException(nameof(pageCount), pageCount, "too many pages");

        lock (_callLock)
        {
            long selected = dirtyBitmap == null ? (long)pageCount : IndexBitmap(dirtyBitmap, pageCount);
            if (selected == 0)
                return 0;

            _base = basePtr;
            _bitmap = dirtyBitmap;
            _out = hashesOut;
            _pageCount = pageCount;
            _jobKernel = _kernel;
            _prefetch = Prefetch switch
            {
                HashPrefetch.Always => true,
                HashPrefetch.Never => false,
                _ => selected * PageSize >= PrefetchMinBytes,
            };
            _batchPages = BatchPages(selected, Threads);
            _batchCount = (selected + _batchPages - 1) / _batchPages;
            for (int t = 0; t < Threads; t++)
                _regionNext[t * CounterStride] = RegionStart(t);

            if (_workers.Length == 0 || _batchCount == 1)
            {
                RunJob(home: 0);
                return selected;
            }

            _workerError = null;
            OpenJob();
            RunJob(home: 0);
            long state = Volatile.Read(ref _jobState);
            while (Interlocked.CompareExchange(ref _jobState, state | Closed, state) is var seen && seen != state)
                state = seen;
            var wait = new SpinWait();
            while ((Volatile.Read(ref _jobState) & JoinedMask) != 0)
                wait.SpinOnce(sleep1Threshold: -1); // joined workers are mid-batch: never sleep a whole millisecond
            if (_workerError is { } error)
                throw new InvalidOperationException("a hashing worker failed", error);
            return selected;
        }
    }

    public void Dispose()
    {
        lock (_callLock)
        {
            if (_disposed)
                return;
            _disposed = true;
            OpenJob();
        }
        foreach (var worker in _workers)
            worker.Thread?.Join();
    }

    /// <summary>About 8 batches per thread so a slow or preempted thread is balanced by the others, each a
    /// multiple of the 8-page group, between 8 pages (32 KiB) and 512 pages (2 MiB).</summary>
    private static long BatchPages(long selected, int threads)
    {
        long batch = selected / ((long)threads * 8);
        batch = (batch + GroupPages - 1) / GroupPages * GroupPages;
        return Math.Clamp(batch, MinBatchPages, MaxBatchPages);
    }

    /// <summary>Fills _prefix (selected pages before each bitmap word) and returns the number selected.</summary>
    private long IndexBitmap(ulong* bitmap, ulong pageCount)
    {
        long words = (long)((pageCount + 63) / 64);
        if (_prefix.Length < words + 1)
            _prefix = new long[words + 1];
        long sum = 0;
        for (long w = 0; w < words - 1; w++)
        {
            _prefix[w] = sum;
            sum += BitOperations.PopCount(bitmap[w]);
        }
        _prefix[words - 1] = sum;
        sum += BitOperations.PopCount(bitmap[words - 1] & LastWordMask(pageCount));
        _prefix[words] = sum;
        return sum;
    }

    /// <summary>Bits of the last bitmap word that name real pages (bits past pageCount are ignored).</summary>
    private static ulong LastWordMask(ulong pageCount) =>
        pageCount % 64 == 0 ? ulong.MaxValue : (1UL << (int)(pageCount % 64)) - 1;

    private ulong BitmapWord(long w)
    {
        ulong bits = _bitmap[w];
        return (ulong)w == (_pageCount - 1) / 64 ? bits & LastWordMask(_pageCount) : bits;
    }

    /// <summary>Where the selected page with output index <paramref name="index"/> is: its bitmap word and the
    /// bits of that word from that page on.</summary>
    private PageCursor Locate(long index)
    {
        if (_bitmap == null)
            return new PageCursor { Word = index };
        // Smallest w with _prefix[w] > index; the page is in word w - 1.
        long lo = 0, hi = (long)((_pageCount + 63) / 64);
        while (lo < hi)
        {
            long mid = (lo + hi) >>> 1;
            if (_prefix[mid] > index) hi = mid;
            else lo = mid + 1;
        }
        long word = lo - 1;
        ulong bits = BitmapWord(word);
        for (long skip = index - _prefix[word]; skip > 0; skip--)
            bits &= bits - 1;
        return new PageCursor { Word = word, Bits = bits };
    }

    /// <summary>First batch of region <paramref name="region"/> (region Threads is the end of the last).</summary>
    private long RegionStart(int region) => _batchCount * region / Threads;

    /// <summary>Claims the next batch of the home region, else of the other regions in turn.</summary>
    private bool ClaimBatch(int home, out long start, out long end)
    {
        for (int k = 0; k < Threads; k++)
        {
            int region = (home + k) % Threads;
            long regionEnd = RegionStart(region + 1);
            ref long next = ref _regionNext[region * CounterStride];
            if (Volatile.Read(ref next) >= regionEnd)
                continue;
            long batch = Interlocked.Increment(ref next) - 1;
            if (batch >= regionEnd)
                continue;
            start = batch * _batchPages;
            end = Math.Min(start + _batchPages, _bitmap == null ? (long)_pageCount : _prefix[(long)((_pageCount + 63) / 64)]);
            return true;
        }
        start = end = 0;
        return false;
    }

    /// <summary>Takes up to 8 pages from the cursor into ptrs; unused slots repeat the first page.</summary>
    private int FillGroup(byte** ptrs, ref PageCursor cursor, ref long index, long end)
    {
        int n = (int)Math.Min(GroupPages, end - index);
        for (int i = 0; i < n; i++)
        {
            long page;
            if (_bitmap == null)
            {
                page = cursor.Word++;
            }
            else
            {
                while (cursor.Bits == 0)
                    cursor.Bits = BitmapWord(++cursor.Word);
                page = cursor.Word * 64 + BitOperations.TrailingZeroCount(cursor.Bits);
                cursor.Bits &= cursor.Bits - 1;
            }
            ptrs[i] = _base + page * PageSize;
        }
        for (int i = n; i < GroupPages; i++)
            ptrs[i] = ptrs[0];
        index += n;
        return n;
    }

    /// <summary>Claims batches until none are left, hashing 8 pages at a time while prefetching the next 8
    /// (claiming the next batch early so the prefetch crosses batch boundaries).</summary>
    private void RunJob(int home)
    {
        byte** current = stackalloc byte*[GroupPages];
        byte** next = stackalloc byte*[GroupPages];
        ulong* partial = stackalloc ulong[GroupPages];

        if (!ClaimBatch(home, out long index, out long end))
            return;
        PageCursor cursor = Locate(index);
        long currentOut = index;
        int count = FillGroup(current, ref cursor, ref index, end);
        while (true)
        {
            if (index == end && ClaimBatch(home, out long start, out long stop))
            {
                index = start;
                end = stop;
                cursor = Locate(index);
            }
            long nextOut = index;
            int nextCount = index < end ? FillGroup(next, ref cursor, ref index, end) : 0;
            if (nextCount == 0)
            {
                for (int i = 0; i < GroupPages; i++)
                    next[i] = current[i];
            }

            ulong* dst = count == GroupPages ? _out + currentOut : partial;
            switch (_jobKernel)
            {
                case HashKernel.Avx512: Avx512PageKernel.Hash8(current, next, dst, _prefetch); break;
                case HashKernel.Avx2: Avx2PageKernel.HashGroup(current, count, next, dst, _prefetch); break;
                default: ScalarPageKernel.HashGroup(current, count, next, dst, _prefetch); break;
            }
            if (dst == partial)
            {
                for (int i = 0; i < count; i++)
                    _out[currentOut + i] = partial[i];
            }

            if (nextCount == 0)
                return;
            byte** done = current;
            current = next;
            next = done;
            count = nextCount;
            currentOut = nextOut;
        }
    }

    /// <summary>Publishes the job fields written so far as a new open generation and wakes sleeping workers.</summary>
    private void OpenJob()
    {
        _generation++;
        Volatile.Write(ref _jobState, (long)_generation << 32);
        WakeWorkers();
    }

    private static int Generation(long state) => (int)(state >> 32);

    /// <summary>Joins the job of generation <paramref name="generation"/> if it is still open.</summary>
    private bool TryJoin(int generation)
    {
        long state = Volatile.Read(ref _jobState);
        while (Generation(state) == generation && (state & Closed) == 0)
        {
            long seen = Interlocked.CompareExchange(ref _jobState, state + 1, state);
            if (seen == state)
                return true;
            state = seen;
        }
        return false;
    }

    private void WakeWorkers()
    {
        foreach (var worker in _workers)
        {
            if (Interlocked.CompareExchange(ref worker.Sleeping, 0, 1) == 1)
                worker.Wake.Release();
        }
    }

    private void WorkerLoop(object? state)
    {
        var me = (WorkerSignal)state!;
        int seen = 0;
        while (true)
        {
            WaitForJob(me, seen);
            seen = Generation(Volatile.Read(ref _jobState));
            if (_disposed)
                return;
            if (!TryJoin(seen))
                continue; // the caller finished this job without us
            try
            {
                RunJob(me.Home);
            }
            catch (Exception e)
            {
                _workerError = e;
            }
            Interlocked.Decrement(ref _jobState); // leaves the job: the joined count is the low bits

        }
    }

    /// <summary>Spins briefly (calls often come back to back), then sleeps on the worker's semaphore.</summary>
    private void WaitForJob(WorkerSignal me, int seen)
    {
        long spinUntil = Stopwatch.GetTimestamp() + Stopwatch.Frequency * SpinMicroseconds / 1_000_000;
        while (Generation(Volatile.Read(ref _jobState)) == seen)
        {
            if (Stopwatch.GetTimestamp() < spinUntil)
            {
                Thread.SpinWait(20);
                continue;
            }
            Interlocked.Exchange(ref me.Sleeping, 1);
            if (Generation(Volatile.Read(ref _jobState)) != seen && Interlocked.CompareExchange(ref me.Sleeping, 0, 1) == 1)
                return; // a job arrived before anyone saw us asleep
            me.Wake.Wait(); // the waker cleared Sleeping and released once
        }
    }

    private struct PageCursor
    {
        public long Word; // bitmap word (or, without a bitmap, the next page number)
        public ulong Bits; // unconsumed selected bits of Word
    }

    private sealed class WorkerSignal
    {
        public int Sleeping;
        public int Home; // the region this worker claims from first
        public readonly SemaphoreSlim Wake = new(0);
        public Thread? Thread;
    }
}
