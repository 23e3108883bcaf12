using static TorchSharp.torch;

namespace Loom.Models.Reformer;

/// <summary>
/// A position-wise layer (the feed-forward layer) run on the sequence in chunks (Reformer §3, "Chunking"): the
/// output is the same as on the whole sequence, since positions do not interact, but the hidden activations
/// (B, chunk, F) exist for one chunk at a time instead of (B, T, F). That bounds the forward's peak; under autograd
/// every chunk's graph is still kept until the backward, so the saving on training memory comes with a
/// <see cref="ReversibleStack"/>, whose backward re-runs one block at a time.
/// </summary>
public sealed class ChunkedFeedForward : nn.Module<Tensor, Tensor>
{
    // Field name is the state-dict key, so the wrapped layer's weights keep their names under "inner.".
    private readonly nn.Module<Tensor, Tensor> inner;

    /// <summary>Wraps <paramref name="inner"/> (owned from now on), a position-wise (B, T, D) → (B, T, D) layer.</summary>
    /// <param name="inner">The layer, for example <see cref="Layers.Mlp"/>.</param>
    /// <param name="chunkLength">Positions per chunk; the last chunk may be shorter.</param>
    public ChunkedFeedForward(nn.Module<Tensor, Tensor> inner, int chunkLength) : base(nameof(ChunkedFeedForward))
    {
        this.inner = inner ?? throw new ArgumentNullException(nameof(inner));
        if (chunkLength < 1)
            throw new ArgumentOutOfRangeException(nameof(chunkLength), chunkLength, "chunkLength must be at least 1");
        ChunkLength = chunkLength;
        RegisterComponents();
    }

    /// <summary>Positions per chunk.</summary>
    public int ChunkLength { get; }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) // (B, T, D)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.shape[1] <= ChunkLength)
            return inner.call(x);
        var chunks = x.split(ChunkLength, 1).Select(c => inner.call(c)).ToArray(); // each (B, ≤chunk, D)
        return cat(chunks, 1);                                                      // (B, T, D)
    }
}
