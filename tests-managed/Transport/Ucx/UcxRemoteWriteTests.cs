using System.Runtime.InteropServices;
using Plover.Transport.Ucx;
using Xunit;

namespace Plover.Tests.Transport.Ucx;

/// <summary>One-sided writes (ucp_put) into a registered region, then a completion message on the stream: the
/// order the sync uses for divergent pages (over UCX's TCP transport here, an RDMA WRITE on RDMA hardware).</summary>
public sealed unsafe class UcxRemoteWriteTests
{
    [UcxFact]
    public void Pages_put_then_flushed_are_in_the_backups_region_when_the_completion_arrives()
    {
        using var primaryWorker = new UcxWorker(UcxSettings.OverTcp, "p");
        using var backupWorker = new UcxWorker(UcxSettings.OverTcp, "b");
        using var toBackup = new UcxStream(primaryWorker, backupWorker.Address());
        using var toPrimary = new UcxStream(backupWorker, primaryWorker.Address());
        const int pages = 64;
        byte* staging = (byte*)NativeMemory.AlignedAlloc(pages * 4096, 4096);
        byte* source = (byte*)NativeMemory.AlignedAlloc(pages * 4096, 4096);
        try
        {
            new Span<byte>(staging, pages * 4096).Clear();
            new Random(5).NextBytes(new Span<byte>(source, pages * 4096));
            using var region = new UcxMemoryRegion(backupWorker, staging, pages * 4096);
            using (var writer = new UcxRemoteWriter(toBackup, region.PackedKey(), region.Address, region.Length))
            {
                int[] divergent = [0, 3, 17, 63];
                foreach (int page in divergent) writer.Put(source + page * 4096, 4096, (ulong)page * 4096);
                Assert.Throws<ArgumentOutOfRangeException>(() => writer.Put(source, 4096, (ulong)(pages * 4096 - 100)));
                writer.Flush(5000);
                toBackup.Send("done"u8, 5000);

                var message = new byte[4];
                Assert.Equal(4, toPrimary.Receive(message, 5000));
                Assert.Equal("done"u8.ToArray(), message);
                for (int page = 0; page < pages; page++)
                {
                    var got = new ReadOnlySpan<byte>(staging + page * 4096, 4096);
                    if (divergent.Contains(page)) Assert.True(got.SequenceEqual(new ReadOnlySpan<byte>(source + page * 4096, 4096)), $"page {page}");
                    else Assert.True(got.IndexOfAnyExcept((byte)0) < 0, $"page {page} was written");
                }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(staging);
            NativeMemory.AlignedFree(source);
        }
    }
}
