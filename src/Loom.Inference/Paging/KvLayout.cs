using Loom.Models;
using TorchSharp;

namespace Loom.Inference.Paging;

/// <summary>
/// What one token's keys and values look like in every layer: the numbers that size a KV block.
/// Take it from a model with <see cref="For"/>; with multi-query attention <see cref="NumKvHeads"/>
/// is 1, which is what makes a block small (Pope et al. 2022).
/// </summary>
public sealed record KvLayout
{
    private readonly int numLayers = 1;
    private readonly int numKvHeads = 1;
    private readonly int headDim = 1;
    private readonly torch.ScalarType dtype = torch.ScalarType.Float32;

    /// <summary>Number of decoder layers, each with its own keys and values.</summary>
    public int NumLayers
    {
        get => numLayers;
        init => numLayers = value > 0 ? value : throw new ArgumentException($"kv layout num_layers = {value} must be positive");
    }

    /// <summary>Number of key/value heads per layer (1 = multi-query).</summary>
    public int NumKvHeads
    {
        get => numKvHeads;
        init => numKvHeads = value > 0 ? value : throw new ArgumentException($"kv layout num_kv_heads = {value} must be positive");
    }

    /// <summary>Width of each key/value head.</summary>
    public int HeadDim
    {
        get => headDim;
        init => headDim = value > 0 ? value : throw new ArgumentException($"kv layout head_dim = {value} must be positive");
    }

    /// <summary>Element type of the stored keys and values.</summary>
    public torch.ScalarType DType
    {
        get => dtype;
        init
        {
            ElementBytesOf(value); // throws for element types a KV cache cannot hold
            dtype = value;
        }
    }

    /// <summary>Bytes of one stored element of <see cref="DType"/>.</summary>
    public int ElementBytes => ElementBytesOf(DType);

    /// <summary>The layout of a model's cached keys and values (<see cref="LanguageModel.KvCacheShape"/>) stored as <paramref name="dtype"/>.</summary>
    public static KvLayout For(KvCacheShape shape, torch.ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(shape);
        return new KvLayout { NumLayers = shape.NumLayers, NumKvHeads = shape.NumKvHeads, HeadDim = shape.HeadDim, DType = dtype };
    }

    private static int ElementBytesOf(torch.ScalarType type) => type switch
    {
        torch.ScalarType.Float64 => 8,
        torch.ScalarType.Float32 => 4,
        torch.ScalarType.Float16 or torch.ScalarType.BFloat16 => 2,
        torch.ScalarType.Int8 or torch.ScalarType.Byte => 1,
        _ => throw new ArgumentException($"kv layout dtype {type} is not supported; use Float32, Float16, BFloat16, Float64, Int8 or Byte"),
    };
}
