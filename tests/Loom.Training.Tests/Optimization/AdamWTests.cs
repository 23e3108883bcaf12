using Loom.Training.Optimization;
using TorchSharp;
using TorchSharp.Modules;
using AdamW = Loom.Training.Optimization.AdamW;

namespace Loom.Training.Tests.Optimization;

public class AdamWTests
{
    private static readonly double[] LearningRates = [1e-2, 3e-2, 5e-3, 2e-2, 1e-2, 7e-3];

    [Theory]
    [InlineData("matrices")]
    [InlineData("all")]
    [InlineData("exclude-2.weight")]
    public void MatchesTorchSharpAdamWWithVaryingLearningRate(string decayMode)
    {
        using var ours = TinyModel.Create(1);
        using var theirs = TinyModel.Create(1);
        var options = new AdamWOptions
        {
            Beta1 = 0.9, Beta2 = 0.95, Epsilon = 1e-8, WeightDecay = 0.1,
            DecayOnlyMatrices = decayMode == "matrices",
            ExcludeFromWeightDecay = decayMode == "exclude-2.weight" ? name => name == "2.weight" : null,
        };
        bool Decays((string name, Parameter p) np) => decayMode switch
        {
            "matrices" => np.p.dim() >= 2,
            "all" => true,
            _ => np.name != "2.weight",
        };
        var named = theirs.named_parameters().ToList();
        using var reference = torch.optim.AdamW(new[]
        {
            new TorchSharp.Modules.AdamW.ParamGroup(named.Where(Decays).Select(np => np.parameter), beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1),
            new TorchSharp.Modules.AdamW.ParamGroup(named.Where(np => !Decays(np)).Select(np => np.parameter), beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0),
        });
        using var optimizer = new AdamW(ours.named_parameters(), options);
        var initial = ours.parameters().Select(TinyModel.Values).ToList();

        for (int step = 0; step < LearningRates.Length; step++)
        {
            optimizer.ZeroGrad();
            reference.zero_grad();
            TinyModel.Backward(ours, step);
            TinyModel.Backward(theirs, step);
            optimizer.Step(LearningRates[step]);
            foreach (var group in reference.ParamGroups)
                group.LearningRate = LearningRates[step];
            reference.step();

            foreach (var ((name, a), (_, b)) in ours.named_parameters().Zip(theirs.named_parameters()))
            {
                var (x, y) = (TinyModel.Values(a), TinyModel.Values(b));
                for (int i = 0; i < x.Length; i++)
                    Assert.True(Math.Abs(x[i] - y[i]) <= 1e-6, $"step {step} {name}[{i}]: {x[i]} vs {y[i]}");
            }
        }
        Assert.Equal(LearningRates.Length, optimizer.StepCount);
        // Six steps at these rates move every parameter well beyond the tolerance above.
        foreach (var (before, p) in initial.Zip(ours.parameters()))
            Assert.True(before.Zip(TinyModel.Values(p)).Max(t => Math.Abs(t.First - t.Second)) > 1e-3);
    }

    [Fact]
    public void ParametersWithoutGradientAreLeftAloneButTheStepCounts()
    {
        using var model = TinyModel.Create(2);
        using var optimizer = new AdamW(model.named_parameters());
        var named = model.named_parameters().ToDictionary(np => np.name, np => np.parameter);
        TinyModel.Backward(model, 0);
        named["2.weight"].grad = null;
        var weightBefore = TinyModel.Values(named["2.weight"]);
        var biasBefore = TinyModel.Values(named["2.bias"]);

        optimizer.Step(1e-2);

        Assert.Equal(1, optimizer.StepCount);
        Assert.Equal(weightBefore, TinyModel.Values(named["2.weight"]));
        var state = optimizer.StateTensors();
        Assert.All(TinyModel.Values(state["2.weight.exp_avg"]), v => Assert.Equal(0f, v));
        Assert.All(TinyModel.Values(state["2.weight.exp_avg_sq"]), v => Assert.Equal(0f, v));
        Assert.NotEqual(biasBefore, TinyModel.Values(named["2.bias"]));
        Assert.Contains(TinyModel.Values(state["2.bias.exp_avg"]), v => v != 0f);
    }

    [Fact]
    public void ZeroGradClearsGradients()
    {
        using var model = TinyModel.Create(3);
        using var optimizer = new AdamW(model.named_parameters());
        TinyModel.Backward(model, 0);
        Assert.All(model.parameters(), p => Assert.NotNull(p.grad));
        optimizer.ZeroGrad();
        Assert.All(model.parameters(), p => Assert.Null(p.grad));
    }

    [Fact]
    public void StateIsKeyedByParameterNameAndSlot()
    {
        using var model = TinyModel.Create(4);
        using var optimizer = new AdamW(model.named_parameters());
        var state = optimizer.StateTensors();
        Assert.Equal(
            new[] { "0.weight.exp_avg", "0.weight.exp_avg_sq", "0.bias.exp_avg", "0.bias.exp_avg_sq",
                    "2.weight.exp_avg", "2.weight.exp_avg_sq", "2.bias.exp_avg", "2.bias.exp_avg_sq" },
            state.Keys);
        Assert.Equal(new long[] { 3, 8 }, state["2.weight.exp_avg_sq"].shape);
    }

    [Fact]
    public void DisposeFreesStateAndRefusesFurtherSteps()
    {
        using var model = TinyModel.Create(5);
        var optimizer = new AdamW(model.named_parameters());
        var state = optimizer.StateTensors().Values.ToList();
        optimizer.Dispose();
        Assert.All(state, t => Assert.True(t.IsInvalid));
        Assert.Throws<ObjectDisposedException>(() => optimizer.Step(1e-3));
        Assert.False(model.parameters().First().IsInvalid);
    }

    [Fact]
    public void DuplicateNamesAndBadLearningRatesAreRefused()
    {
        using var model = TinyModel.Create(6);
        var p = model.named_parameters().First();
        var e = Assert.Throws<ArgumentException>(() => new AdamW([p, p]));
        Assert.Contains(p.name, e.Message);
        using var optimizer = new AdamW(model.named_parameters());
        Assert.Throws<ArgumentOutOfRangeException>(() => optimizer.Step(double.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => optimizer.Step(-1e-3));
        Assert.Equal(0, optimizer.StepCount);
    }
}
