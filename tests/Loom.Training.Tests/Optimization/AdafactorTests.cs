using Loom.Training.Optimization;
using TorchSharp;
using TorchSharp.Modules;

namespace Loom.Training.Tests.Optimization;

public class AdafactorTests
{
    private static readonly double[] LearningRates = [0.3, 0.1, 0.2, 0.05, 0.15];

    private static readonly (string Name, long[] Shape)[] Shapes =
        [("w", [5, 7]), ("b", [7]), ("t", [2, 3, 4])];

    [Theory]
    // factored, beta1, clip (0 = none), parameter scale, decay: none | lr2 | lr2-rate-no-b | rate-matrices
    [InlineData(false, 0.9, 1.0, true, "none", torch.ScalarType.Float64)]
    [InlineData(true, 0.9, 1.0, true, "none", torch.ScalarType.Float64)]
    [InlineData(true, 0.0, 0.5, true, "lr2", torch.ScalarType.Float64)]
    [InlineData(false, 0.0, 0.5, true, "lr2", torch.ScalarType.Float64)]
    [InlineData(true, 0.9, 0.0, false, "rate-matrices", torch.ScalarType.Float64)]
    [InlineData(false, 0.9, 1.0, true, "lr2-rate-no-b", torch.ScalarType.Float64)]
    [InlineData(false, 0.9, 1.0, true, "lr2", torch.ScalarType.Float32)]
    [InlineData(true, 0.0, 0.5, true, "lr2", torch.ScalarType.Float32)]
    public void MatchesElementwiseReferenceOfThePaper(bool factored, double beta1, double clip, bool parameterScale, string decay, torch.ScalarType dtype)
    {
        var options = new AdafactorOptions
        {
            Factored = factored,
            MinDimSizeToFactor = 2,
            Beta1 = beta1,
            ClipThreshold = clip == 0 ? null : clip,
            MultiplyByParameterScale = parameterScale,
            DecoupledWeightDecayFromLrSquared = decay.StartsWith("lr2", StringComparison.Ordinal),
            WeightDecayRate = decay switch { "lr2-rate-no-b" => 0.5, "rate-matrices" => 0.01, _ => null },
            DecayOnlyMatrices = decay == "rate-matrices",
            ExcludeFromWeightDecay = decay == "lr2-rate-no-b" ? name => name == "b" : null,
        };
        using var gen = new torch.Generator(7);
        var parameters = Shapes
            .Select(s => (s.Name, Param: new Parameter(torch.randn(s.Shape, dtype: dtype, generator: gen).mul_(0.5))))
            .ToList();
        var reference = new AdafactorReference(options, parameters.Select(p => (p.Name, p.Param.shape, Doubles(p.Param))));
        using var optimizer = new Adafactor(parameters, options);

        for (int step = 0; step < LearningRates.Length; step++)
        {
            var grads = new Dictionary<string, double[]>();
            foreach (var (name, param) in parameters)
            {
                // Gradient scale changes from step to step so that RMS(u) and the clipping vary.
                param.grad = torch.randn(param.shape, dtype: dtype, generator: gen).mul_(0.2 + step);
                grads[name] = Doubles(param.grad!);
            }
            optimizer.Step(LearningRates[step]);
            reference.Step(LearningRates[step], grads);

            double tolerance = dtype == torch.ScalarType.Float64 ? 1e-10 : 1e-5;
            foreach (var (name, param) in parameters)
            {
                double[] actual = Doubles(param), expected = reference.Values(name);
                for (int i = 0; i < actual.Length; i++)
                    Assert.True(Math.Abs(actual[i] - expected[i]) <= tolerance * Math.Max(1, Math.Abs(expected[i])),
                        $"step {step} {name}[{i}]: {actual[i]} vs reference {expected[i]}");
            }
        }
        foreach (var (_, p) in parameters)
            p.Dispose();
    }

    [Fact]
    public void FactoredStateHasRowAndColumnAccumulatorsAndVectorsStayFull()
    {
        using var gen = new torch.Generator(1);
        var parameters = Shapes.Select(s => (s.Name, new Parameter(torch.randn(s.Shape, generator: gen)))).ToList();
        using var optimizer = new Adafactor(parameters, new AdafactorOptions { Factored = true, MinDimSizeToFactor = 2 });
        var shapes = optimizer.StateTensors().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        Assert.Equal(
            new Dictionary<string, long[]>
            {
                ["w.v_row"] = [5], ["w.v_col"] = [7], ["w.m"] = [5, 7],
                ["b.v"] = [7], ["b.m"] = [7],
                ["t.v_row"] = [2, 3], ["t.v_col"] = [2, 4], ["t.m"] = [2, 3, 4],
            },
            shapes);
    }

    [Fact]
    public void MatricesSmallerThanMinDimSizeToFactorAndNoMomentumKeepOnlyFullSecondMoment()
    {
        var w = new Parameter(torch.zeros(5, 7));
        using var optimizer = new Adafactor([("w", w)], new AdafactorOptions { Factored = true, Beta1 = 0 });
        Assert.Equal(new[] { "w.v" }, optimizer.StateTensors().Keys);
        w.Dispose();
    }

    [Fact]
    public void PaLMPresetDecaysByLearningRateSquared()
    {
        // Zero gradient: v = ε1, u = 0/√ε1 = 0, so the only change is the decay p ← (1 − lr²)·p.
        var w = new Parameter(torch.full(3, 2, 2.0, dtype: torch.float64));
        using var optimizer = new Adafactor([("w", w)], AdafactorOptions.PaLM);
        w.grad = torch.zeros(3, 2, dtype: torch.float64);
        optimizer.Step(0.1);
        Assert.All(Doubles(w), v => Assert.Equal(2.0 * (1 - 0.01), v, 1e-15));
        w.Dispose();
    }

    private static double[] Doubles(torch.Tensor t) =>
        t.detach().cpu().to(torch.float64).contiguous().data<double>().ToArray();
}
