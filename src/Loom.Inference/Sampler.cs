using Loom.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Inference;

/// <summary>Chooses next tokens from logits: greedy, or temperature sampling restricted by top-k and top-p.</summary>
public static class Sampler
{
    /// <summary>Next token ids, (B), on the logits' device, for the last-position logits, (B, V).</summary>
    /// <remarks>
    /// A generator must be a CPU generator (TorchSharp creates no others): the draw happens on the CPU,
    /// over the (B, V) probabilities copied there, so a seed gives the same tokens on every device.
    /// </remarks>
    public static Tensor Sample(Tensor logits, SamplingOptions options, Generator? generator)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Temperature == 0) return logits.argmax(-1); // (B)
        var probabilities = Probabilities(logits, options).cpu();                                 // (B, V)
        return multinomial(probabilities, 1, generator: generator).squeeze(-1).to(logits.device); // (B)
    }

    /// <summary>
    /// The distribution <see cref="Sample"/> draws from for temperature &gt; 0: softmax of the logits, (B, V), divided by
    /// the temperature, restricted to the top-k tokens and then to the top-p nucleus. Float32, (B, V), on the logits' device.
    /// Speculative decoding applies it to both the target's and the draft's logits, so that both follow the same rule.
    /// </summary>
    /// <exception cref="ArgumentException">The temperature is 0 (greedy has no distribution to draw from: take the argmax).</exception>
    public static Tensor Probabilities(Tensor logits, SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Temperature == 0) throw new ArgumentException("temperature 0 is greedy: take the argmax instead of a distribution");
        // Scalars held until after their calls, or rooted: a fresh one can be freed mid-call (see RootedScalars).
        using var temperature = options.Temperature.ToScalar();
        var scaled = logits.to(float32).div(temperature);       // (B, V)
        if (options.TopK > 0 && options.TopK < scaled.shape[^1])
        {
            var kth = scaled.topk(options.TopK, dim: -1).values.narrow(-1, options.TopK - 1, 1); // (B, 1)
            scaled = scaled.masked_fill(scaled.lt(kth), RootedScalars.NegativeInfinity);
        }
        if (options.TopP < 1)
        {
            var (sorted, order) = scaled.sort(-1, descending: true);            // (B, V)
            var cumulative = sorted.softmax(-1).cumsum(-1);                     // (B, V)
            // Drop a token when the tokens before it already reach p; the most likely one always stays.
            using var topP = options.TopP.ToScalar();
            var drop = (cumulative - sorted.softmax(-1)).ge(topP);           // (B, V)
            var dropInVocabOrder = zeros_like(drop).scatter(-1, order, drop);  // (B, V)
            scaled = scaled.masked_fill(dropInVocabOrder, RootedScalars.NegativeInfinity);
        }
        return scaled.softmax(-1); // (B, V)
    }
}
