using Loom.Models;

namespace Loom.Inference.Speculative;

/// <summary>
/// <see cref="TextGenerator"/>'s interface over <see cref="SpeculativeDecoder"/>: generates one prompt's continuation
/// speculatively, stopping at end-of-sequence, MaxTokens or the context's end. Greedy output is token-identical to
/// <see cref="TextGenerator.Generate"/>; sampled output has the same distribution (not the same draws).
/// </summary>
public sealed class SpeculativeGenerator
{
    private readonly LanguageModel target;
    private readonly int eosId;
    private readonly SpeculativeOptions options;

    /// <summary>Creates a generator for the decoder-only <paramref name="target"/>; <paramref name="eosId"/> ends a sequence.</summary>
    /// <exception cref="ArgumentException">The target is an encoder-decoder model.</exception>
    public SpeculativeGenerator(LanguageModel target, int eosId, SpeculativeOptions options)
    {
        this.target = target ?? throw new ArgumentNullException(nameof(target));
        this.options = options ?? throw new ArgumentNullException(nameof(options));
        if (target.IsEncoderDecoder) throw new ArgumentException($"speculative decoding takes decoder-only targets, not {target.Options.Architecture}");
        this.eosId = eosId;
    }

    /// <summary>The reason the last enumeration stopped.</summary>
    public FinishReason LastFinishReason { get; private set; }

    /// <summary>Draft tokens proposed during the last enumeration.</summary>
    public long LastProposedTokens { get; private set; }

    /// <summary>Draft tokens accepted during the last enumeration.</summary>
    public long LastAcceptedTokens { get; private set; }

    /// <summary>Target forward passes (rounds) during the last enumeration, the prompt's excluded.</summary>
    public int LastRounds { get; private set; }

    /// <summary>Yields generated token ids one by one (EOS is not yielded).</summary>
    /// <exception cref="ArgumentException">The prompt is empty or does not fit the model's context.</exception>
    public IEnumerable<int> Generate(IReadOnlyList<int> prompt, SamplingOptions sampling)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(sampling);
        int budget = TextGenerator.GenerationBudget(target, prompt, sampling.MaxTokens);
        return Run(prompt, sampling, budget);
    }

    private IEnumerable<int> Run(IReadOnlyList<int> prompt, SamplingOptions sampling, int budget)
    {
        int capacity = prompt.Count + budget;
        using var proposer = options.CreateProposer(capacity);
        using var decoder = new SpeculativeDecoder(target, proposer, options.DraftTokens, sampling, capacity);
        decoder.Start(prompt);
        LastFinishReason = FinishReason.Length;
        LastProposedTokens = LastAcceptedTokens = LastRounds = 0;
        int produced = 0;
        while (produced < budget)
        {
            var tokens = decoder.Step();
            (LastProposedTokens, LastAcceptedTokens, LastRounds) = (decoder.ProposedTokens, decoder.AcceptedTokens, decoder.Rounds);
            foreach (int token in tokens)
            {
                if (token == eosId && sampling.StopAtEos)
                {
                    LastFinishReason = FinishReason.Stop;
                    yield break;
                }
                yield return token;
                if (++produced == budget) yield break;
            }
        }
    }
}
