using System.Text;
using Plover.Consensus;
using Xunit;

namespace Plover.Tests.Consensus;

/// <summary>Drives single nodes with hand-built messages, the way the transport does.</summary>
public sealed class NodeApiTests
{
    private static readonly Ballot B11 = new(1, 1), B21 = new(2, 1), B22 = new(2, 2);

    private static ConsensusNode NewNode(int id) => new(SimCluster.DefaultConfig(id), new Random(id));

    private static LogEntry E(long index, Ballot ballot, string value) => new(index, ballot, EntryType.Input, Encoding.UTF8.GetBytes(value));

    private static List<Message> Drain(ConsensusNode n, List<LogEntry>? committed = null, List<Ready>? seen = null)
    {
        var messages = new List<Message>();
        while (n.HasReady)
        {
            var r = n.GetReady();
            foreach (var m in r.Messages) messages.Add(m.Detach());   // their entries are lent until Advance
            committed?.AddRange(r.CommittedEntries);
            if (seen is not null)
            {
                var copy = new Ready { Change = r.Change, Fenced = r.Fenced, Snapshot = r.Snapshot };
                seen.Add(copy);
            }
            n.Advance();
        }
        return messages;
    }

    [Fact]
    public void NewLeaderAdoptsTheHighestBallotValuePerSlot_ReproposesInItsBallot_ThenAppendsRole()
    {
        var b = NewNode(2);
        // The old primary (ballot 1.1) sent slots 1 and 2 to the backup.
        b.Step(new Message { Type = MessageType.Accept, From = 1, To = 2, Ballot = B11, Index = 1, Entries = new LogEntry[] { E(1, B11, "a"), E(2, B11, "c") } });
        var acks = Drain(b);
        var ack = Assert.Single(acks);
        Assert.Equal((MessageType.Accepted, 2L, false), (ack.Type, ack.Index, ack.Reject));

        // Silence: the backup asks for pre-votes with ballot 2.2 (its round 1 + 1, its id).
        for (int t = 0; t < 40 && b.Role == ConsensusRole.Follower; t++) b.Tick();
        Assert.Equal(ConsensusRole.PreCandidate, b.Role);
        var preVotes = Drain(b);
        Assert.Equal(2, preVotes.Count(m => m.Type == MessageType.PreVote && m.Ballot == B22));
        Assert.Equal(B11, b.Ballot);   // a pre-vote changes nothing durable

        b.Step(new Message { Type = MessageType.PreVoteReply, From = 3, To = 2, Ballot = B22 });
        Assert.Equal(ConsensusRole.Candidate, b.Role);
        Assert.Equal(B22, b.Ballot);
        var prepares = Drain(b);
        Assert.All(prepares, m => Assert.Equal((MessageType.Prepare, B22, 1L), (m.Type, m.Ballot, m.Index)));

        // The witness had accepted slot 2 in a higher ballot (2.1), and slot 3 that the backup never saw.
        b.Step(new Message
        {
            Type = MessageType.Promise, From = 3, To = 2, Ballot = B22, Index = 1, Commit = 0,
            Entries = new LogEntry[] { E(1, B11, "a"), E(2, B21, "d"), E(3, B21, "e") },
        });
        Assert.True(b.IsLeader);
        Assert.Equal(4, b.LastIndex);
        Assert.Equal(["a", "d", "e"], Enumerable.Range(1, 3).Select(i => Encoding.UTF8.GetString(b.Log[i].Payload.Span)));
        Assert.All(Enumerable.Range(1, 4), i => Assert.Equal(B22, b.Log[i].Ballot));
        Assert.Equal(EntryType.Role, b.Log[4].Type);
        Assert.Equal((B22, 2, 0), EntryPayloads.DecodeRole(b.Log[4].Payload.Span));

        var accepts = Drain(b);
        var toWitness = Assert.Single(accepts, m => m.To == 3 && m.Entries.Length > 0);
        Assert.Equal(1, toWitness.Index);
        Assert.Equal(4, toWitness.Entries.Length);

        // One acknowledgement makes a majority with the leader itself.
        b.Step(new Message { Type = MessageType.Accepted, From = 3, To = 2, Ballot = B22, Index = 4 });
        var committed = new List<LogEntry>();
        Drain(b, committed);
        Assert.Equal([1L, 2, 3, 4], committed.Select(e => e.Index));
    }

    [Fact]
    public void LeaderSeeingAHigherBallot_IsFenced_AndStopsProposing()
    {
        var p = NewNode(1);
        Assert.True(p.IsLeader);
        Assert.True(p.TryPropose(EntryType.Sync, EntryPayloads.EncodeSync(7), out long idx));
        Assert.Equal(1, idx);
        Drain(p);

        p.Step(new Message { Type = MessageType.Nack, From = 3, To = 1, Ballot = B22 });
        var seen = new List<Ready>();
        Drain(p, seen: seen);
        Assert.False(p.IsLeader);
        Assert.Equal(B22, p.Ballot);
        var fence = Assert.Single(seen, r => r.Fenced is not null).Fenced!.Value;
        Assert.Equal((B11, FenceReason.HigherBallot), (fence.Ballot, fence.Reason));
        Assert.False(p.TryPropose(EntryType.Input, [1], out _));

        // Old-ballot traffic is refused from now on.
        p.Step(new Message { Type = MessageType.Accept, From = 2, To = 1, Ballot = new(1, 2), Index = 2, Entries = new LogEntry[] { E(2, new(1, 2), "x") } });
        var nack = Assert.Single(Drain(p));
        Assert.Equal((MessageType.Nack, B22), (nack.Type, nack.Ballot));
        Assert.Equal(1, p.LastIndex);
    }

    [Fact]
    public void FollowerWithAGap_AsksForAResend_ThenAcceptsInOrder()
    {
        var w = NewNode(3);
        w.Step(new Message { Type = MessageType.Accept, From = 1, To = 3, Ballot = B11, Index = 3, Commit = 0, Entries = new LogEntry[] { E(3, B11, "c") } });
        var gap = Assert.Single(Drain(w));
        Assert.Equal((MessageType.Accepted, 0L, true), (gap.Type, gap.Index, gap.Reject));
        Assert.Equal(0, w.LastIndex);

        w.Step(new Message { Type = MessageType.Accept, From = 1, To = 3, Ballot = B11, Index = 1, Commit = 2, Entries = new LogEntry[] { E(1, B11, "a"), E(2, B11, "b"), E(3, B11, "c") } });
        var committed = new List<LogEntry>();
        var ok = Assert.Single(Drain(w, committed));
        Assert.Equal((MessageType.Accepted, 3L, false), (ok.Type, ok.Index, ok.Reject));
        Assert.Equal([1L, 2], committed.Select(e => e.Index));

        // A duplicate changes nothing and is acknowledged again.
        w.Step(new Message { Type = MessageType.Accept, From = 1, To = 3, Ballot = B11, Index = 2, Commit = 2, Entries = new LogEntry[] { E(2, B11, "b") } });
        Assert.Equal(3L, Assert.Single(Drain(w)).Index);
    }

    [Fact]
    public void PreVoteIsRefusedWhileTheLeaderIsHeard_AndGrantedAfterSilence()
    {
        var w = NewNode(3);
        w.Step(new Message { Type = MessageType.Accept, From = 1, To = 3, Ballot = B11, Index = 1 });
        Drain(w);
        w.Step(new Message { Type = MessageType.PreVote, From = 2, To = 3, Ballot = B22 });
        Assert.True(Assert.Single(Drain(w)).Reject);
        for (int t = 0; t < 10; t++) w.Tick();
        Drain(w);
        w.Step(new Message { Type = MessageType.PreVote, From = 2, To = 3, Ballot = B22 });
        var reply = Assert.Single(Drain(w));
        Assert.Equal((MessageType.PreVoteReply, false), (reply.Type, reply.Reject));
        Assert.Equal(B11, w.Ballot);
    }

    [Fact]
    public void ForeignAndMisaddressedMessagesAreIgnored()
    {
        var w = NewNode(3);
        w.Step(new Message { Type = MessageType.Prepare, From = 9, To = 3, Ballot = new(5, 9), Index = 1 });
        w.Step(new Message { Type = MessageType.Prepare, From = 2, To = 1, Ballot = new(5, 2), Index = 1 });
        w.Step(new Message { Type = MessageType.Prepare, From = 1, To = 3, Ballot = new(5, 2), Index = 1 });   // not its ballot
        var b = NewNode(2);
        b.Step(new Message { Type = MessageType.Prepare, From = 3, To = 2, Ballot = new(5, 3), Index = 1 });   // the witness owns no ballot
        b.Step(new Message { Type = MessageType.Accept, From = 1, To = 2, Ballot = B11, Index = 1, Entries = new LogEntry[] { E(1, B11, "a"), E(3, B11, "gap") } });
        b.Step(new Message { Type = MessageType.Accept, From = 1, To = 2, Ballot = B11, Index = 1, Entries = new LogEntry[] { E(1, B22, "future ballot") } });
        Assert.False(b.HasReady);
        Assert.Equal(0, b.LastIndex);
        Assert.False(w.HasReady);
        Assert.Equal(B11, w.Ballot);
    }

    [Fact]
    public void ReadyMustBeAcknowledgedBeforeTheNextOne()
    {
        var p = NewNode(1);
        p.TryPropose(EntryType.Input, [1], out _);
        p.GetReady();
        Assert.False(p.HasReady);
        Assert.Throws<InvalidOperationException>(() => p.GetReady());
        p.Advance();
        Assert.Throws<InvalidOperationException>(() => p.Advance());
    }

    [Fact]
    public void ProposeCopiesThePayloadOnce()
    {
        var p = NewNode(1);
        byte[] buf = [1, 2, 3];
        p.TryPropose(EntryType.Input, buf, out long idx);
        buf[0] = 99;
        Assert.Equal(new byte[] { 1, 2, 3 }, p.Log[idx].Payload.ToArray());
    }

    [Fact]
    public void InvalidConfigurationIsRefusedWithTheProblemNamed()
    {
        var members = SimCluster.DefaultConfig(1).Members;
        var e1 = Assert.Throws<ArgumentException>(() => new ConsensusNode(new ConsensusConfig { SelfId = 1, Members = members, InitialLeaderId = 3 }, new Random()));
        Assert.Contains("initial leader", e1.Message);
        var e2 = Assert.Throws<ArgumentException>(() => new ConsensusNode(new ConsensusConfig { SelfId = 4, Members = members, InitialLeaderId = 1 }, new Random()));
        Assert.Contains("self id 4", e2.Message);
        var e3 = Assert.Throws<ArgumentException>(() => new ConsensusNode(new ConsensusConfig { SelfId = 1, Members = members, InitialLeaderId = 1, ElectionMinTicks = 20, ElectionMaxTicks = 10 }, new Random()));
        Assert.Contains("ElectionMaxTicks", e3.Message);
    }
}
