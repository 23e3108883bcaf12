using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Speculative;

/// <summary>
/// Speculative decoding of one sequence (Leviathan et al. 2023): each round a proposer drafts k tokens, the target
/// model scores all k + 1 positions in one forward over its <see cref="KvCache"/>, and
/// <see cref="SpeculativeSampling"/> keeps the accepted prefix plus one token of the target's own, so the output is
/// distributed exactly as the target's (token-identical when greedy). The cache is then rolled back to the accepted
/// length. <see cref="TextGenerator.Generate"/> is the reference it must agree with.
/// </summary>
/// <remarks>
/// Invariant between rounds: the target's cache holds every token of <see cref="Sequence"/> but the last, which the
/// next round feeds together with the drafts.
/// </remarks>
public sealed class SpeculativeDecoder : IDisposable
{
    private readonly LanguageModel target;
    private readonly IDraftProposer proposer;
    private readonly SamplingOptions sampling;
    private readonly int draftTokens;
    private readonly int vocabularySize;
    private readonly KvCache cache;
    private readonly Generator generator;
    private readonly Device device;
    private readonly List<int> sequence = [];

    /// <summary>Creates the decoder of one sequence of up to <paramref name="capacity"/> tokens (prompt + output).</summary>
    /// <param name="target">The model whose output distribution is kept, decoder-only, in eval mode.</param>
    /// <param name="proposer">Drafts tokens; the caller owns it.</param>
    /// <param name="draftTokens">Most tokens drafted per round, k.</param>
    /// <param name="sampling">Greedy, or temperature with top-k and top-p (penalties and log-probabilities are not applied).</param>
    /// <param name="capacity">Most tokens in the sequence, at most the target's context.</param>
    /// <param name="vocabularySize">How many leading ids are candidates (null: all of the target's logits), as <see cref="Engine.RequestSampler"/> narrows them.</param>
    /// <exception cref="ArgumentException">The target is an encoder-decoder model.</exception>
    public SpeculativeDecoder(LanguageModel target, IDraftProposer proposer, int draftTokens, SamplingOptions sampling, int capacity, int? vocabularySize = null)
    {
        this.target = target ?? throw new ArgumentNullException(nameof(target));
        this.proposer = proposer ?? throw new ArgumentNullException(nameof(proposer));
        this.sampling = sampling ?? throw new ArgumentNullException(nameof(sampling));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(draftTokens);
        if (target.IsEncoderDecoder) throw new ArgumentException($"speculative decoding takes decoder-only targets, not {target.Options.Architecture}");
        this.draftTokens = draftTokens;
        this.vocabularySize = Math.Min(vocabularySize ?? int.MaxValue, target.Options.VocabSize);
        device = ReferenceDecoder.DeviceOf(target);
        cache = KvCache.For(target, 1, capacity);
        generator = new Generator(0);
        if (sampling.Seed is long seed) generator.manual_seed(seed);
        else generator.seed();
        target.eval();
    }

    /// <summary>The prompt and every token accepted so far.</summary>
    public IReadOnlyList<int> Sequence => sequence;

    /// <summary>Positions the target's cache holds: always <see cref="Sequence"/>'s length − 1 between rounds.</summary>
    public int CachedLength => cache.Length;

    /// <summary>Draft tokens proposed so far.</summary>
    public long ProposedTokens { get; private set; }

    /// <summary>Draft tokens the target accepted so far.</summary>
    public long AcceptedTokens { get; private set; }

    /// <summary>Rounds run so far: forward passes of the target after the prompt's.</summary>
    public int Rounds { get; private set; }

    /// <summary>Prefills the target's cache with the prompt but its last token.</summary>
    /// <exception cref="ArgumentException">The prompt is empty or leaves no room in the capacity.</exception>
    /// <exception cref="InvalidOperationException">Already started.</exception>
    public void Start(IReadOnlyList<int> prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (sequence.Count > 0) throw new InvalidOperationException("the decoder already started: one decoder serves one sequence");
        if (prompt.Count == 0 || prompt.Count >= cache.Capacity)
            throw new ArgumentException($"the prompt has {prompt.Count} tokens: give 1..{cache.Capacity - 1} to leave room for output");
        sequence.AddRange(prompt);
        if (prompt.Count == 1) return;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        cache.Run(target, tensor(prompt.Take(prompt.Count - 1).Select(t => (long)t).ToArray(), device: device).unsqueeze(0)); // (1, T-1, V), discarded
    }

    /// <summary>
    /// One round: draft up to k tokens, verify them in one target forward, keep the accepted ones and the target's
    /// next token. Returns the 1..k + 1 new tokens (end-of-sequence included: stopping is the caller's).
    /// </summary>
    /// <exception cref="InvalidOperationException">Not started, or the sequence has reached the capacity.</exception>
    public IReadOnlyList<int> Step()
    {
        if (sequence.Count == 0) throw new InvalidOperationException("call Start with the prompt first");
        if (sequence.Count > cache.Capacity)
            throw new InvalidOperationException($"the sequence has reached the capacity of {cache.Capacity} tokens");
        int last = sequence.Count - 1;                                   // position of the newest token, not yet cached
        int k = Math.Min(draftTokens, cache.Capacity - sequence.Count); // positions last..last + k must fit
        var output = new List<int>(k + 1);
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            var proposal = k > 0 ? proposer.Propose(sequence, k, sampling, generator, vocabularySize) : DraftProposal.None;
            var draft = proposal.Tokens.Take(k).ToArray();
            var input = new long[draft.Length + 1];
            input[0] = sequence[last];
            for (int i = 0; i < draft.Length; i++) input[i + 1] = draft[i];
            var logits = cache.Run(target, tensor(input, device: device).unsqueeze(0))[0];              // (k+1, V)
            var known = logits.narrow(-1, 0, Math.Min(logits.shape[^1], vocabularySize));               // (k+1, V')
            var verdict = sampling.Temperature == 0
                ? SpeculativeSampling.Greedy(known.argmax(-1).cpu().data<long>().ToArray(), draft)
                : SpeculativeSampling.Sample(Sampler.Probabilities(known, sampling).cpu(), proposal.Probabilities, draft, generator);
            cache.Truncate(last + 1 + verdict.Accepted); // the rejected drafts' keys and values are dropped
            output.AddRange(draft.Take(verdict.Accepted));
            output.Add(verdict.Next);
            ProposedTokens += draft.Length;
            AcceptedTokens += verdict.Accepted;
            Rounds++;
        }
        sequence.AddRange(output);
        return output;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        cache.Dispose();
        generator.Dispose();
    }
}
