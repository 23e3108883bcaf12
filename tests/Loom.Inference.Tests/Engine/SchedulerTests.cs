using Loom.Data;
using Loom.Inference.Engine;
using Loom.Inference.Paging;

namespace Loom.Inference.Tests.Engine;

public class SchedulerTests
{
    private static readonly ByteVocabulary Bytes = new();

    private static EngineSequence Sequence(BlockAllocator allocator, long id, int[] prompt)
    {
        var request = new GenerationRequest(prompt, new SamplingOptions { Temperature = 0, MaxTokens = 4 });
        return new EngineSequence(id, request, new RequestOutput(request, Bytes, 64), new RequestSampler(request.Sampling, Bytes), new BlockTable(allocator), prompt);
    }

    [Fact]
    public void ACancelledRequestLeavesTheQueueWhereverItWaits()
    {
        var allocator = new BlockAllocator(8, 4, enablePrefixCaching: false);
        var scheduler = new Scheduler(new EngineOptions { MaxQueue = 20_000, MaxRunning = 2, TokenBudget = 8 });
        var sequences = Enumerable.Range(0, 20_000).Select(i => Sequence(allocator, i, [1, 2, 3])).ToList();
        Assert.All(sequences, s => Assert.True(scheduler.Submit(s)));
        Assert.False(scheduler.Submit(Sequence(allocator, -1, [1])));
        Assert.Empty(scheduler.TakeCancelled());

        Assert.True(scheduler.Cancel(sequences[12_345]));
        Assert.False(scheduler.Cancel(sequences[12_345]));
        Assert.Equal([sequences[12_345]], scheduler.TakeCancelled());
        Assert.Equal(19_999, scheduler.WaitingCount);

        var plan = scheduler.Schedule();
        Assert.Equal([sequences[0], sequences[1]], plan.Rows.Select(r => r.Sequence));
        Assert.Equal(19_997, scheduler.WaitingCount);
        Assert.True(scheduler.Cancel(sequences[1]));
        Assert.Equal([sequences[1]], scheduler.TakeCancelled());
        Assert.Equal([sequences[0]], scheduler.Running);
        Assert.Equal(1, allocator.Usage.InUse); // the cancelled running sequence's block is free again
        foreach (var s in sequences) s.Sampler.Dispose();
    }

    [Fact]
    public void UpdateCachesTheRowsAndAppendsTheSampledTokens()
    {
        var allocator = new BlockAllocator(8, 4, enablePrefixCaching: false);
        var scheduler = new Scheduler(new EngineOptions { TokenBudget = 5 });
        var (a, b) = (Sequence(allocator, 0, [1, 2, 3]), Sequence(allocator, 1, [4, 5, 6, 7]));
        scheduler.Submit(a);
        scheduler.Submit(b);
        scheduler.TakeCancelled();
        var plan = scheduler.Schedule(); // a's prompt, then 2 of b's 4 tokens (chunked prefill)
        Assert.Equal([(0, 3), (0, 2)], plan.Rows.Select(r => (r.Start, r.Count)));
        Assert.Equal([true, false], plan.Rows.Select(r => r.SamplesNext));
        scheduler.Update(plan, new ModelRunnerOutput([new SampledToken(0, 42, null)]));
        Assert.Equal([1, 2, 3, 42], a.Tokens);
        Assert.Equal((3, 2), (a.Computed, b.Computed));
        var next = scheduler.Schedule(); // a decodes 42, b finishes its prompt
        Assert.Equal([(a, 3, 1), (b, 2, 2)], next.Rows.Select(r => (r.Sequence, r.Start, r.Count)));
        a.Sampler.Dispose();
        b.Sampler.Dispose();
    }
}
