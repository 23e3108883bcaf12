using Loom.Training.Optimization;
using AdamW = Loom.Training.Optimization.AdamW;

namespace Loom.Training.Tests.Optimization;

public class OptionsAndFactoryTests
{
    [Fact]
    public void DefaultsAreTheDocumentedOnes()
    {
        var a = new AdamWOptions();
        Assert.Equal((0.9, 0.95, 1e-8, 0.1, true), (a.Beta1, a.Beta2, a.Epsilon, a.WeightDecay, a.DecayOnlyMatrices));
        var f = new AdafactorOptions();
        Assert.Equal((0.9, 0.8, 1e-30, 1e-3, (double?)1.0, true, false, 128L, (double?)null, false),
            (f.Beta1, f.DecayRate, f.Epsilon1, f.Epsilon2, f.ClipThreshold, f.MultiplyByParameterScale, f.Factored,
             f.MinDimSizeToFactor, f.WeightDecayRate, f.DecoupledWeightDecayFromLrSquared));
        Assert.True(AdafactorOptions.PaLM.DecoupledWeightDecayFromLrSquared);
        Assert.False(AdafactorOptions.PaLM.Factored);
    }

    [Fact]
    public void OutOfRangeOptionsNameTheFieldAndRange()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new AdamWOptions { Beta2 = 1.0 });
        Assert.Equal("Beta2", e.ParamName);
        Assert.Contains("[0, 1)", e.Message);
        Assert.Equal("WeightDecay", Assert.Throws<ArgumentOutOfRangeException>(() => new AdamWOptions { WeightDecay = -0.1 }).ParamName);
        Assert.Equal("Epsilon", Assert.Throws<ArgumentOutOfRangeException>(() => new AdamWOptions { Epsilon = double.NaN }).ParamName);
        Assert.Equal("ClipThreshold", Assert.Throws<ArgumentOutOfRangeException>(() => new AdafactorOptions { ClipThreshold = 0 }).ParamName);
        Assert.Equal("Epsilon1", Assert.Throws<ArgumentOutOfRangeException>(() => new AdafactorOptions { Epsilon1 = 0 }).ParamName);
        Assert.Equal("DecayRate", Assert.Throws<ArgumentOutOfRangeException>(() => new AdafactorOptions { DecayRate = 1.5 }).ParamName);
        Assert.Equal("MinDimSizeToFactor", Assert.Throws<ArgumentOutOfRangeException>(() => new AdafactorOptions { MinDimSizeToFactor = 0 }).ParamName);
        Assert.Equal("WeightDecayRate", Assert.Throws<ArgumentOutOfRangeException>(() => AdafactorOptions.PaLM with { WeightDecayRate = 1.0 }).ParamName);
        Assert.Null(new AdafactorOptions { ClipThreshold = null }.ClipThreshold);
    }

    [Fact]
    public void OptimizerFactoryBuildsByNameAndListsValidNames()
    {
        using var model = TinyModel.Create(1);
        using (var adamw = Optimizers.Create("adamw", model.named_parameters()))
            Assert.IsType<AdamW>(adamw);
        using (var adafactor = Optimizers.Create(" AdaFactor ", model.named_parameters(), adafactor: AdafactorOptions.PaLM))
            Assert.Same(AdafactorOptions.PaLM, Assert.IsType<Adafactor>(adafactor).Options);
        var e = Assert.Throws<ArgumentException>(() => Optimizers.Create("sgd", model.named_parameters()));
        Assert.Contains("'sgd'", e.Message);
        Assert.Contains("adamw, adafactor", e.Message);
    }
}
