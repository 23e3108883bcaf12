using static TorchSharp.torch;

namespace Loom.Models;

/// <summary>
/// The dtype a model's matmuls and attention run in. Parameters (the master weights) and the optimizer
/// state stay float32 whatever it is; TorchSharp has no autocast, so the layers cast explicitly: each
/// dense or expert kernel and its input are cast to the compute dtype at use (the cast is differentiable,
/// so gradients land on the float32 parameters), attention runs on the resulting 16-bit queries, keys and
/// values, and norms, the residual stream, the MoE router, the softmax of the loss and the loss itself stay
/// float32 (a 16-bit branch output added to the float32 residual is promoted back).
/// </summary>
public enum ComputePrecision
{
    /// <summary>Everything in float32 (the default; inference always runs so).</summary>
    Float32,

    /// <summary>bfloat16 matmuls and attention over float32 master weights (config <c>bf16</c>).</summary>
    BFloat16,

    /// <summary>
    /// float16 matmuls and attention over float32 master weights (config <c>fp16</c>). float16's narrow range
    /// underflows small gradients, so training scales the loss dynamically (see the trainer's loss scaling).
    /// </summary>
    Float16,
}

/// <summary>Config names and dtypes of <see cref="ComputePrecision"/>.</summary>
public static class ComputePrecisions
{
    /// <summary>The names configs use: "fp32", "bf16" and "fp16".</summary>
    public static IReadOnlyList<string> Names { get; } = ["fp32", "bf16", "fp16"];

    /// <summary>The precision a config name stands for.</summary>
    /// <exception cref="ArgumentException">An unknown name; the message lists the known ones.</exception>
    public static ComputePrecision Parse(string name, string key = "training.precision") => name switch
    {
        "fp32" => ComputePrecision.Float32,
        "bf16" => ComputePrecision.BFloat16,
        "fp16" => ComputePrecision.Float16,
        _ => throw new ArgumentException($"{key} = '{name}' is unknown: use \"fp32\" (float32 throughout), \"bf16\" (bfloat16 matmuls and attention over float32 weights) or \"fp16\" (float16, with dynamic loss scaling)"),
    };

    /// <summary>The dtype layers cast to, or null for float32 (no casts at all).</summary>
    public static ScalarType? Dtype(this ComputePrecision precision) => precision switch
    {
        ComputePrecision.BFloat16 => ScalarType.BFloat16,
        ComputePrecision.Float16 => ScalarType.Float16,
        _ => null,
    };
}

/// <summary>
/// A layer whose matmuls run in the model's compute dtype (<see cref="LanguageModel.Precision"/>), set by
/// the model on every such layer it holds; null computes in the parameters' own dtype, with no cast.
/// </summary>
public interface IMixedPrecisionLayer
{
    /// <summary>The dtype to cast kernels and inputs to at use; null for none.</summary>
    ScalarType? ComputeDtype { get; set; }
}
