using TorchSharp;
using TorchSharp.Modules;

namespace Loom.Training.Tests.Optimization;

/// <summary>A two-layer MLP with deterministic weights and per-step data, for optimizer tests.</summary>
internal static class TinyModel
{
    /// <summary>Linear(6→8), tanh, Linear(8→3): parameters "0.weight" [8,6], "0.bias" [8], "2.weight" [3,8], "2.bias" [3].</summary>
    public static Sequential Create(ulong seed, torch.ScalarType dtype = torch.ScalarType.Float32)
    {
        var model = torch.nn.Sequential(
            ("0", torch.nn.Linear(6, 8)), ("1", torch.nn.Tanh()), ("2", torch.nn.Linear(8, 3)));
        model.to(dtype);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var gen = new torch.Generator(seed);
        foreach (var (_, p) in model.named_parameters())
            p.copy_(torch.randn(p.shape, dtype: dtype, generator: gen) * 0.5);
        return model;
    }

    /// <summary>Accumulates the gradient of a mean-squared error on data that depends only on <paramref name="step"/>.</summary>
    public static void Backward(Sequential model, long step, torch.ScalarType dtype = torch.ScalarType.Float32)
    {
        using var scope = torch.NewDisposeScope();
        using var gen = new torch.Generator(1000 + (ulong)step);
        var x = torch.randn([5, 6], dtype: dtype, generator: gen);        // [5, 6]
        var y = torch.randn([5, 3], dtype: dtype, generator: gen);        // [5, 3]
        var loss = (model.forward(x) - y).square().mean();                // []
        loss.backward();
    }

    public static float[] Values(torch.Tensor t) => t.detach().cpu().contiguous().data<float>().ToArray();
}
