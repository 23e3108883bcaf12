using Loom.Inference;
using static TorchSharp.torch;

namespace Loom.Inference.Tests;

public class SamplerTests
{
    private static readonly float[] Logits = { 2.0f, 1.0f, 0.5f, 0.0f, -1.0f }; // softmax ≈ .57 .21 .13 .08 .03

    private static HashSet<long> Draws(SamplingOptions options, int n = 400)
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(42);
        var logits = tensor(Logits).unsqueeze(0).expand(n, -1);
        return Sampler.Sample(logits, options, g).data<long>().ToHashSet();
    }

    [Fact]
    public void GreedyTakesTheArgmax()
    {
        using var _ = NewDisposeScope();
        var ids = Sampler.Sample(tensor(new float[,] { { 0, 3, 1 }, { 5, 0, 1 } }), new SamplingOptions { Temperature = 0 }, null);
        Assert.Equal(new long[] { 1, 0 }, ids.data<long>().ToArray());
    }

    [Fact]
    public void TopKAndTopPRestrictTheSupport()
    {
        Assert.Equal(new HashSet<long> { 0, 1, 2, 3, 4 }, Draws(new SamplingOptions()));
        Assert.Equal(new HashSet<long> { 0, 1 }, Draws(new SamplingOptions { TopK = 2 }));
        // p = 0.7: token 0 (.57) alone is short of it, 0 and 1 (.78) reach it.
        Assert.Equal(new HashSet<long> { 0, 1 }, Draws(new SamplingOptions { TopP = 0.7 }));
        Assert.Equal(new HashSet<long> { 0 }, Draws(new SamplingOptions { TopP = 0.5 }));
    }

    [Fact]
    public void InvalidOptionsAreRefused()
    {
        Assert.Throws<ArgumentException>(() => new SamplingOptions { Temperature = -1 });
        Assert.Throws<ArgumentException>(() => new SamplingOptions { TopP = 0 });
        Assert.Throws<ArgumentException>(() => new SamplingOptions { MaxTokens = 0 });
        Assert.Throws<ArgumentException>(() => new SamplingOptions { TopK = -2 });
    }
}
