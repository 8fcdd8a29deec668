using System.Globalization;
using System.Numerics;
using System.Text.Json;

namespace Plover.Native.Host;

/// <summary>
/// Replicated drives (issue 15 item 2): what QEMU tracks of the drives listed in drives= of -object plover, and
/// their blocks read and written through its block layer. DRIVE is the 0-based drive number.
/// <code>
/// drives                          {drives:[{id,name,device,size,granularity,blocks}]}
/// drive-dirty DRIVE [list]        stop if running; take the drive's dirty blocks (QEMU clears them); resume:
///                                 {drive,wasRunning,dirtyBlocks,blocks?:[i,...],truncated?} (at most 100000 listed)
/// drive-read DRIVE OFFSET LEN     {hex} (LEN at most 64 KiB)
/// drive-write DRIVE OFFSET HEX    stop if running; write (not marked dirty); resume: {rc}
/// </code>
/// drive-dirty and drive-write exist in probe mode only: the replica owns the bitmaps and the backup's disk.
/// </summary>
internal sealed unsafe partial class AdminCommands
{
    private const int MaxDriveRead = 64 << 10;

    private void AddDriveCommands()
    {
        _commands["drives"] = ("drives", _ => Drives());
        _commands["drive-dirty"] = ("drive-dirty DRIVE [list]", DriveDirty);
        _commands["drive-read"] = ("drive-read DRIVE OFFSET LEN", DriveRead);
        _commands["drive-write"] = ("drive-write DRIVE OFFSET HEX", DriveWrite);
    }

    private string Drives()
    {
        DriveInfo[] drives = OnMain(() =>
        {
            RequireMachine();
            return Host.Drives();
        });
        using var reply = new AdminReply();
        Utf8JsonWriter j = reply.Json;
        j.WriteStartArray("drives");
        foreach (DriveInfo d in drives)
        {
            j.WriteStartObject();
            j.WriteNumber("id", d.Id);
            j.WriteString("name", d.Name);
            j.WriteString("device", d.Device);
            j.WriteNumber("size", d.Size);
            j.WriteNumber("granularity", d.Granularity);
            j.WriteNumber("blocks", d.Blocks);
            j.WriteEndObject();
        }
        j.WriteEndArray();
        return reply.Finish();
    }

    private static ulong ParseNumber(string text, string what) =>
        ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out ulong n)
            ? n : throw new AdminError($"{what} '{text}' is not a number");

    // Main thread: the drive, or an AdminError naming how many there are.
    private DriveInfo RequireDrive(uint drive)
    {
        RequireMachine();
        DriveInfo[] drives = Host.Drives();
        return drive < drives.Length ? drives[drive]
            : throw new AdminError($"no drive {drive} (QEMU replicates {drives.Length}; list them in drives=)");
    }

    // Main thread: work with the VM stopped, running again afterwards if it was.
    private T Stopped<T>(Func<bool, T> work)
    {
        bool running = Host.VmIsRunning();
        if (running)
            Check(Host.VmStop(), "vm_stop");
        try
        {
            return work(running);
        }
        finally
        {
            if (running)
                Check(Host.VmStart(), "vm_start");
        }
    }

    private string DriveDirty(string[] args)
    {
        bool list = args switch
        {
            [_] => false,
            [_, "list"] => true,
            _ => throw new AdminError("usage: drive-dirty DRIVE [list]"),
        };
        uint drive = (uint)ParseNumber(args[0], "DRIVE");
        var (wasRunning, taken, bitmap) = OnMain(() =>
        {
            DriveInfo d = RequireDrive(drive);
            var words = new ulong[d.BitmapWords];
            return Stopped(running => (running, Host.DriveDirtyTake(drive, words), words));
        });
        if (taken < 0)
            return RcReply("dirtyBlocks", taken, "drive_dirty_take");

        using var reply = new AdminReply();
        Utf8JsonWriter j = reply.Json;
        j.WriteNumber("drive", drive);
        j.WriteBoolean("wasRunning", wasRunning);
        j.WriteNumber("dirtyBlocks", taken);
        if (list)
        {
            int listed = 0;
            j.WriteStartArray("blocks");
            for (int w = 0; w < bitmap.Length && listed < MaxListedPages; w++)
                for (ulong word = bitmap[w]; word != 0 && listed < MaxListedPages; word &= word - 1, listed++)
                    j.WriteNumberValue((long)w * 64 + BitOperations.TrailingZeroCount(word));
            j.WriteEndArray();
            j.WriteBoolean("truncated", listed < taken);
        }
        return reply.Finish();
    }

    private string DriveRead(string[] args)
    {
        if (args.Length != 3)
            throw new AdminError("usage: drive-read DRIVE OFFSET LEN");
        uint drive = (uint)ParseNumber(args[0], "DRIVE");
        ulong offset = ParseNumber(args[1], "OFFSET"), length = ParseNumber(args[2], "LEN");
        if (length > MaxDriveRead)
            throw new AdminError($"LEN {length} is more than {MaxDriveRead}");
        var data = new byte[length];
        int rc = OnMain(() =>
        {
            RequireDrive(drive);
            return Host.DriveRead(drive, offset, data);
        });
        if (rc < 0)
            return RcReply("rc", rc, "drive_read");
        using var reply = new AdminReply();
        reply.Json.WriteString("hex", Convert.ToHexStringLower(data));
        return reply.Finish();
    }

    private string DriveWrite(string[] args)
    {
        if (args.Length != 3)
            throw new AdminError("usage: drive-write DRIVE OFFSET HEX");
        uint drive = (uint)ParseNumber(args[0], "DRIVE");
        ulong offset = ParseNumber(args[1], "OFFSET");
        byte[] data;
        try
        {
            data = Convert.FromHexString(args[2]);
        }
        catch (FormatException)
        {
            throw new AdminError("HEX is not an even number of hex digits");
        }
        int rc = OnMain(() =>
        {
            RequireDrive(drive);
            return Stopped(_ => Host.DriveWrite(drive, offset, data));
        });
        return RcReply("rc", rc, "drive_write");
    }
}
