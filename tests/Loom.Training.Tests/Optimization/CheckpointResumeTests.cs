using Loom.Training.Optimization;
using TorchSharp;
using TorchSharp.Modules;

namespace Loom.Training.Tests.Optimization;

public class CheckpointResumeTests
{
    private const int N = 4;

    private static IOptimizer Create(string name, Sequential model) => Optimizers.Create(
        name, model.named_parameters(),
        adafactor: AdafactorOptions.PaLM with { Factored = true, MinDimSizeToFactor = 2 });

    private static double LearningRate(long step) => 1e-2 / Math.Sqrt(step + 1);

    private static void Train(IOptimizer optimizer, Sequential model, long from, long to)
    {
        for (long step = from; step < to; step++)
        {
            optimizer.ZeroGrad();
            TinyModel.Backward(model, step);
            optimizer.Step(LearningRate(step));
        }
    }

    [Theory]
    [InlineData("adamw")]
    [InlineData("adafactor")]
    public void SaveAndLoadIntoAFreshOptimizerContinuesBitIdentically(string name)
    {
        using var straight = TinyModel.Create(11);
        using var straightOptimizer = Create(name, straight);
        Train(straightOptimizer, straight, 0, 2 * N);

        Dictionary<string, torch.Tensor> savedState;
        List<torch.Tensor> savedParams;
        long savedSteps;
        using (var first = TinyModel.Create(11))
        using (var firstOptimizer = Create(name, first))
        {
            Train(firstOptimizer, first, 0, N);
            savedState = firstOptimizer.StateTensors().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
            savedParams = first.parameters().Select(p => p.detach().clone()).ToList<torch.Tensor>();
            savedSteps = firstOptimizer.StepCount;
        }

        using var resumed = TinyModel.Create(99); // different weights, overwritten from the checkpoint
        using (torch.no_grad())
            foreach (var (p, saved) in resumed.parameters().Zip(savedParams))
                p.copy_(saved);
        using var resumedOptimizer = Create(name, resumed);
        resumedOptimizer.LoadState(savedState, savedSteps);
        Assert.Equal(N, resumedOptimizer.StepCount);
        Train(resumedOptimizer, resumed, N, 2 * N);

        Assert.Equal(2 * N, resumedOptimizer.StepCount);
        foreach (var (a, b) in straight.parameters().Zip(resumed.parameters()))
            Assert.Equal(TinyModel.Values(a), TinyModel.Values(b));
        var expectedState = straightOptimizer.StateTensors();
        foreach (var (key, t) in resumedOptimizer.StateTensors())
            Assert.Equal(TinyModel.Values(expectedState[key]), TinyModel.Values(t));
    }

    [Theory]
    [InlineData("adamw")]
    [InlineData("adafactor")]
    public void StateSurvivesTheCallersDisposeScopes(string name)
    {
        using var plainModel = TinyModel.Create(21);
        using var scopedModel = TinyModel.Create(21);
        using var plain = Create(name, plainModel);
        IOptimizer scoped;
        using (torch.NewDisposeScope())
            scoped = Create(name, scopedModel);
        using (scoped)
        {
            Train(plain, plainModel, 0, N);
            for (long step = 0; step < N; step++)
            {
                using var scope = torch.NewDisposeScope();
                Train(scoped, scopedModel, step, step + 1);
            }
            var expected = plain.StateTensors();
            foreach (var (key, t) in scoped.StateTensors())
            {
                Assert.False(t.IsInvalid, key);
                Assert.Equal(TinyModel.Values(expected[key]), TinyModel.Values(t));
            }
            Assert.Equal(TinyModel.Values(plainModel.parameters().First()), TinyModel.Values(scopedModel.parameters().First()));
        }
    }

    [Fact]
    public void ResumingWithoutTheStepCountWouldDiverge()
    {
        // Guards the test above: the step count matters (bias correction), so restoring only tensors is not enough.
        using var straight = TinyModel.Create(12);
        using var straightOptimizer = Create("adamw", straight);
        Train(straightOptimizer, straight, 0, 2 * N);

        using var other = TinyModel.Create(12);
        using var otherOptimizer = Create("adamw", other);
        Train(otherOptimizer, other, 0, N);
        var state = otherOptimizer.StateTensors().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        otherOptimizer.LoadState(state, 0);
        Train(otherOptimizer, other, N, 2 * N);
        Assert.NotEqual(TinyModel.Values(straight.parameters().First()), TinyModel.Values(other.parameters().First()));
    }

    [Fact]
    public void LoadStateNamesMissingUnexpectedAndMisshapenKeysAndCopiesNothing()
    {
        using var model = TinyModel.Create(13);
        using var optimizer = Create("adamw", model);
        var good = optimizer.StateTensors().ToDictionary(kv => kv.Key, kv => torch.ones_like(kv.Value));

        var missing = new Dictionary<string, torch.Tensor>(good);
        missing.Remove("0.bias.exp_avg_sq");
        Assert.Contains("missing '0.bias.exp_avg_sq'", Assert.Throws<ArgumentException>(() => optimizer.LoadState(missing, 3)).Message);

        var extra = new Dictionary<string, torch.Tensor>(good) { ["0.bias.momentum"] = torch.ones(8) };
        Assert.Contains("unexpected optimizer state key '0.bias.momentum'", Assert.Throws<ArgumentException>(() => optimizer.LoadState(extra, 3)).Message);

        var misshapen = new Dictionary<string, torch.Tensor>(good) { ["2.weight.exp_avg"] = torch.ones(8, 3) };
        var e = Assert.Throws<ArgumentException>(() => optimizer.LoadState(misshapen, 3));
        Assert.Contains("'2.weight.exp_avg' has shape [8, 3]; expected [3, 8]", e.Message);

        Assert.Equal(0, optimizer.StepCount);
        Assert.All(optimizer.StateTensors().Values, t => Assert.All(TinyModel.Values(t), v => Assert.Equal(0f, v)));

        optimizer.LoadState(good, 3);
        Assert.Equal(3, optimizer.StepCount);
        Assert.All(optimizer.StateTensors().Values, t => Assert.All(TinyModel.Values(t), v => Assert.Equal(1f, v)));
    }
}
