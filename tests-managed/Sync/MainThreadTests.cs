using Plover.Sync;
using Xunit;

namespace Plover.Tests.Sync;

public sealed class MainThreadTests
{
    /// <summary>Work for the main thread never runs anywhere else: once the main thread is gone, a waiter gets an
    /// error (instead of waiting forever, or the work running on the waiter's own thread).</summary>
    [Fact]
    public void WorkThatCanNoLongerRunOnTheMainThreadNeverRunsElsewhere()
    {
        var main = new DedicatedMainThread("test-main");
        int ranOn = -1;
        main.Invoke(() => ranOn = Environment.CurrentManagedThreadId);
        Assert.NotEqual(Environment.CurrentManagedThreadId, ranOn);
        main.Dispose();

        bool ran = false, refused = false;
        main.Post(() => ran = true, () => refused = true);
        Assert.False(ran);
        Assert.True(refused);
        var e = Assert.Throws<SyncHostException>(() => main.Invoke(() => ran = true));
        Assert.Contains("runs no more work", e.Message);
        Assert.False(ran);
        main.Post(() => ran = true);   // no fallback: simply dropped
        Assert.False(ran);
    }
}
