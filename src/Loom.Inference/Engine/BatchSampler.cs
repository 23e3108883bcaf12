using Loom.Data;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Engine;

/// <summary>
/// Samples the next token of every row of a step at once, on the logits' device: per-row penalties, output-constraint
/// masks, temperature, top-k and top-p as batched operations over one (N, V) tensor, then one host copy of the (N)
/// chosen ids (and of the log-probabilities, when some row asks for them). It gives the tokens each row's
/// <see cref="RequestSampler.Next"/> gives (the reference), because it draws the same random numbers from each request's
/// generator.
/// </summary>
/// <remarks>
/// The draw: <see cref="Sampler.Sample"/> calls libtorch's <c>multinomial</c>, which for one sample takes
/// argmax(p / q) with q ~ Exp(1), V' draws from the generator (the exponential race, equivalent to inverse-CDF
/// sampling). Here each sampled row's q comes from its own CPU generator into one (N, V') host tensor, which goes to
/// the device in one copy; greedy rows draw nothing, as in the reference.
/// </remarks>
public static class BatchSampler
{
    /// <summary>Chooses a next token for each row and records it in the row's sampler.</summary>
    /// <param name="logits">The rows' last-position logits, (N, V) (V may exceed the vocabulary: ids past it are never chosen).</param>
    /// <param name="samplers">Each row's sampling state, N of them.</param>
    /// <param name="vocabulary">The model's vocabulary (for its size and the log-probabilities' texts).</param>
    /// <returns>Per row the token and, when its request asked, its log-probability with alternatives.</returns>
    /// <exception cref="InvalidOperationException">A row's output constraint allows no token.</exception>
    public static (int[] Tokens, TokenLogProb?[] LogProbs) Sample(Tensor logits, IReadOnlyList<RequestSampler> samplers, IVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(samplers);
        ArgumentNullException.ThrowIfNull(vocabulary);
        int n = samplers.Count;
        if (logits.shape[0] != n) throw new ArgumentException($"{logits.shape[0]} rows of logits for {n} samplers");
        if (n == 0) return ([], []);
        using var scope = NewDisposeScope();
        var device = logits.device;
        int known = (int)Math.Min(logits.shape[1], vocabulary.Size);
        var adjusted = Constrain(Penalize(logits.narrow(1, 0, known).to(float32), samplers), samplers, known); // (N, V')
        var chosen = adjusted.argmax(-1);                                                                   // (N), greedy
        if (samplers.Any(s => s.Options.Temperature != 0)) chosen = Draw(adjusted, chosen, samplers);

        var tokens = chosen.cpu().data<long>().Select(t => (int)t).ToArray(); // the step's one host copy of the ids
        var logProbs = new TokenLogProb?[n];
        if (samplers.Any(s => s.Options.LogProbs is not null)) LogProbs(adjusted, chosen, tokens, samplers, vocabulary, logProbs);
        for (int b = 0; b < n; b++) samplers[b].Record(tokens[b]);
        return (tokens, logProbs);
    }

    /// <summary>OpenAI's penalties for every row that has them: logit − count·frequency − (count &gt; 0)·presence.</summary>
    private static Tensor Penalize(Tensor logits, IReadOnlyList<RequestSampler> samplers)
    {
        if (!samplers.Any(s => s.Penalizes)) return logits;
        long width = logits.shape[1];
        var ids = new List<long>();
        var counts = new List<float>();
        var frequency = new List<float>();
        var presence = new List<float>();
        for (int b = 0; b < samplers.Count; b++)
        {
            if (!samplers[b].Penalizes) continue;
            foreach (var (token, count) in samplers[b].GeneratedCounts)
            {
                if (token >= width) continue; // an id past the vocabulary is never chosen
                ids.Add(b * width + token);
                counts.Add(count);
                frequency.Add((float)samplers[b].Options.FrequencyPenalty);
                presence.Add((float)samplers[b].Options.PresencePenalty);
            }
        }
        var flat = logits.reshape(-1);                                                                       // (N·V')
        var at = tensor(ids.ToArray(), device: logits.device);                                               // (M)
        var penalty = tensor(counts.ToArray(), device: logits.device) * tensor(frequency.ToArray(), device: logits.device)
            + tensor(presence.ToArray(), device: logits.device);                                             // (M)
        return flat.clone().index_put_(flat.index_select(0, at) - penalty, at).reshape(logits.shape);       // (N, V')
    }

    /// <summary>Sets to −∞ the logits that constrained rows' constraints forbid; one (N, V') mask, built only when some row is constrained.</summary>
    private static Tensor Constrain(Tensor logits, IReadOnlyList<RequestSampler> samplers, int known)
    {
        if (!samplers.Any(s => s.IsConstrained)) return logits;
        var allowed = new bool[samplers.Count * known];
        for (int b = 0; b < samplers.Count; b++)
        {
            var row = allowed.AsSpan(b * known, known);
            if (samplers[b].IsConstrained) samplers[b].Allowed().AsSpan(0, known).CopyTo(row);
            else row.Fill(true);
        }
        var mask = tensor(allowed, [samplers.Count, known], @bool, logits.device);                           // (N, V')
        return logits.masked_fill(mask.logical_not(), RootedScalars.NegativeInfinity);                             // (N, V')
    }

    /// <summary>Temperature, top-k and top-p per row, then the exponential race with each row's generator; greedy rows keep their argmax.</summary>
    private static Tensor Draw(Tensor adjusted, Tensor greedy, IReadOnlyList<RequestSampler> samplers)
    {
        int n = samplers.Count;
        long width = adjusted.shape[1];
        var device = adjusted.device;
        var options = samplers.Select(s => s.Options).ToArray();
        var sampled = options.Select(o => o.Temperature != 0).ToArray();
        var temperature = tensor(options.Select(o => o.Temperature != 0 ? (float)o.Temperature : 1f).ToArray(), [n, 1], device: device); // (N, 1)
        var scaled = adjusted / temperature;                                                                  // (N, V')
        bool topK = options.Any(o => o.Temperature != 0 && o.TopK > 0 && o.TopK < width);
        bool topP = options.Any(o => o.Temperature != 0 && o.TopP < 1);
        if (topK || topP)
        {
            // One sort serves both filters: top-k masks only the smallest values, so the order stays that of the sort.
            var (sorted, order) = scaled.sort(-1, descending: true);                                          // (N, V') x 2
            if (topK)
            {
                var k = tensor(options.Select(o => o.Temperature != 0 && o.TopK > 0 && o.TopK < width ? o.TopK - 1L : width - 1).ToArray(), [n, 1], device: device); // (N, 1)
                var kth = sorted.gather(1, k);                                                                // (N, 1)
                scaled = scaled.masked_fill(scaled < kth, RootedScalars.NegativeInfinity);
                sorted = sorted.masked_fill(sorted < kth, RootedScalars.NegativeInfinity);
            }
            if (topP)
            {
                // No row without top-p drops anything: its threshold, 2, is above any cumulative probability.
                var p = tensor(options.Select(o => o.Temperature != 0 && o.TopP < 1 ? (float)o.TopP : 2f).ToArray(), [n, 1], device: device); // (N, 1)
                var probabilities = sorted.softmax(-1);                                                       // (N, V')
                var drop = (probabilities.cumsum(-1) - probabilities) >= p;                                   // (N, V')
                scaled = scaled.masked_fill(zeros_like(drop).scatter(-1, order, drop), RootedScalars.NegativeInfinity);
            }
        }
        var noise = ones(n, width, float32);                                                                  // (N, V') on the host
        for (int b = 0; b < n; b++)
            if (sampled[b]) noise[b].exponential_(1, samplers[b].Generator);
        var race = (scaled.softmax(-1) / noise.to(device)).argmax(-1);                                       // (N)
        return where(tensor(sampled, device: device), race, greedy);                                         // (N)
    }

    /// <summary>Fills the log-probability (and top alternatives) of each row that asked, from one host copy.</summary>
    private static void LogProbs(Tensor adjusted, Tensor chosen, int[] tokens, IReadOnlyList<RequestSampler> samplers, IVocabulary vocabulary, TokenLogProb?[] result)
    {
        var logProbs = adjusted.log_softmax(-1);                                                              // (N, V')
        var own = logProbs.gather(1, chosen.unsqueeze(1)).squeeze(1).cpu().data<float>().ToArray();          // (N)
        int top = Math.Min(samplers.Max(s => s.Options.LogProbs ?? 0), (int)logProbs.shape[1]);
        float[] values = [];
        long[] indices = [];
        if (top > 0)
        {
            var (v, i) = logProbs.topk(top);                                                                  // (N, top) x 2
            values = v.cpu().data<float>().ToArray();
            indices = i.cpu().data<long>().ToArray();
        }
        for (int b = 0; b < samplers.Count; b++)
        {
            if (samplers[b].Options.LogProbs is not int asked) continue;
            var alternatives = new List<TokenLogProb>();
            for (int j = 0; j < Math.Min(asked, top); j++)
            {
                int id = (int)indices[b * top + j];
                alternatives.Add(new TokenLogProb(id, vocabulary.Decode([id]), values[b * top + j], []));
            }
            result[b] = new TokenLogProb(tokens[b], vocabulary.Decode([tokens[b]]), own[b], alternatives);
        }
    }
}
