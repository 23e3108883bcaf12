using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Speculative;

/// <summary>
/// Proposes with a small draft model over its own <see cref="KvCache"/>: k autoregressive decode steps, each greedy
/// or drawn from the draft's distribution q under the request's temperature, top-k and top-p. The cache keeps the
/// tokens it has seen; at each round it is rolled back to the part the sequence still agrees with (the accepted
/// prefix) and fed what is new.
/// </summary>
public sealed class DraftModelProposer : IDraftProposer
{
    private readonly LanguageModel draft;
    private readonly KvCache cache;
    private readonly Device device;
    private readonly List<int> cached = []; // the tokens whose keys and values the cache holds, in order

    /// <summary>Creates a proposer for one sequence of up to <paramref name="capacity"/> tokens (capped at the draft's context).</summary>
    /// <exception cref="ArgumentException">The draft is an encoder-decoder model.</exception>
    public DraftModelProposer(LanguageModel draft, int capacity)
    {
        this.draft = draft ?? throw new ArgumentNullException(nameof(draft));
        if (draft.IsEncoderDecoder) throw new ArgumentException($"the draft is an encoder-decoder ({draft.Options.Architecture}) model: speculative decoding takes decoder-only drafts");
        device = ReferenceDecoder.DeviceOf(draft);
        cache = KvCache.For(draft, 1, Math.Min(capacity, draft.ContextLength));
        draft.eval();
    }

    /// <summary>Positions the draft's cache holds now.</summary>
    public int CachedLength => cache.Length;

    /// <inheritdoc />
    public DraftProposal Propose(IReadOnlyList<int> sequence, int count, SamplingOptions sampling, Generator generator, int vocabularySize)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        ArgumentNullException.ThrowIfNull(sampling);
        if (draft.Options.VocabSize < vocabularySize)
            throw new ArgumentException($"the draft's vocabulary of {draft.Options.VocabSize} ids is smaller than the target's {vocabularySize}: train the draft with the target's vocabulary");
        // Feeding the sequence's tail and count − 1 drafts fills positions up to sequence.Count + count − 2.
        count = Math.Min(count, cache.Capacity - sequence.Count + 1);
        if (count <= 0 || sequence.Count == 0) return DraftProposal.None;
        int keep = 0, limit = Math.Min(cached.Count, sequence.Count - 1); // at least the last token is fed, for its logits
        while (keep < limit && cached[keep] == sequence[keep]) keep++;
        cache.Truncate(keep);
        cached.RemoveRange(keep, cached.Count - keep);

        bool greedy = sampling.Temperature == 0;
        var tokens = new List<int>(count);
        var rows = new List<Tensor>(count);
        var input = sequence.Skip(keep).Select(t => (long)t).ToArray();
        using (no_grad())
        {
            for (int i = 0; i < count; i++)
            {
                var logits = cache.Run(draft, tensor(input, device: device).unsqueeze(0))[0, -1];           // (V)
                cached.AddRange(input.Select(t => (int)t));
                var known = logits.narrow(0, 0, Math.Min(logits.shape[0], vocabularySize)).unsqueeze(0);  // (1, V')
                int token;
                if (greedy)
                    token = (int)known.argmax(-1).item<long>();
                else
                {
                    var q = Sampler.Probabilities(known, sampling).cpu();                                    // (1, V')
                    token = (int)multinomial(q, 1, generator: generator).item<long>();
                    rows.Add(q);
                }
                tokens.Add(token);
                input = [token];
            }
        }
        return new DraftProposal(tokens, greedy ? null : cat(rows, 0)); // (k, V')
    }

    /// <inheritdoc />
    public void Dispose() => cache.Dispose();
}
