using Loom.Data;

namespace Loom.Inference.Engine;

/// <summary>
/// Turns one request's generated tokens into <see cref="GenerationUpdate"/>s: streams their text,
/// finishes at EOS, at a stop sequence (cut from the text, which is held back while it could still
/// be the start of one), at max tokens or at the context's end.
/// </summary>
public sealed class RequestOutput
{
    private readonly SamplingOptions options;
    private readonly IVocabulary vocabulary;
    private readonly StreamingDetokenizer detokenizer;
    private readonly int budget;
    private string pending = ""; // text not yet sent because it may begin a stop sequence

    /// <summary>Creates the output of a request.</summary>
    /// <param name="request">The request.</param>
    /// <param name="vocabulary">Its vocabulary.</param>
    /// <param name="contextLength">The model's context length.</param>
    /// <param name="encoderDecoder">
    /// The prompt goes to an encoder (of up to <paramref name="contextLength"/> tokens) and the output is a
    /// new decoder sequence after a start token, rather than the prompt's continuation.
    /// </param>
    /// <exception cref="ArgumentException">The prompt leaves no room in the context.</exception>
    public RequestOutput(GenerationRequest request, IVocabulary vocabulary, int contextLength, bool encoderDecoder = false)
    {
        ArgumentNullException.ThrowIfNull(request);
        this.vocabulary = vocabulary ?? throw new ArgumentNullException(nameof(vocabulary));
        options = request.Sampling;
        if (encoderDecoder ? request.Prompt.Count > contextLength : request.Prompt.Count >= contextLength)
            throw new ArgumentException($"the prompt has {request.Prompt.Count} tokens; the model's {(encoderDecoder ? "encoder takes" : "context is")} {contextLength}: shorten it");
        PromptTokens = request.Prompt.Count;
        budget = Math.Min(options.MaxTokens, encoderDecoder ? contextLength - 1 : contextLength - request.Prompt.Count);
        // Text is decoded after what precedes it: the prompt it continues, or nothing for a new decoder sequence.
        detokenizer = new StreamingDetokenizer(vocabulary, encoderDecoder ? [] : request.Prompt);
    }

    /// <summary>Tokens in the prompt.</summary>
    public int PromptTokens { get; }

    /// <summary>Tokens generated so far (EOS not counted).</summary>
    public int CompletionTokens { get; private set; }

    /// <summary>Why the request finished, or null while it runs.</summary>
    public FinishReason? Finished { get; private set; }

    /// <summary>Accepts the next generated token; returns the update to send (null when there is nothing to say yet).</summary>
    /// <exception cref="InvalidOperationException">The request already finished.</exception>
    public GenerationUpdate? Accept(int token, TokenLogProb? logProb)
    {
        if (Finished is not null) throw new InvalidOperationException("the request already finished");
        if (token == vocabulary.EosId && options.StopAtEos)
        {
            pending += detokenizer.Flush();
            return Finish(FinishReason.Stop, [], null);
        }
        CompletionTokens++;
        pending += detokenizer.Push(token);
        var logProbs = logProb is null ? null : new[] { logProb };
        // A token of several characters may complete more than one stop sequence: cut at the earliest.
        int cut = -1;
        foreach (string stop in options.Stop)
        {
            int at = pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            pending = pending[..cut];
            return Finish(FinishReason.StopSequence, [token], logProbs);
        }
        if (CompletionTokens >= budget)
        {
            pending += detokenizer.Flush();
            return Finish(FinishReason.Length, [token], logProbs);
        }
        // Send all text except a tail that could still grow into a stop sequence.
        int hold = options.Stop.Count == 0 ? 0 : HeldBack(pending);
        string text = pending[..(pending.Length - hold)];
        pending = pending[(pending.Length - hold)..];
        return new GenerationUpdate([token], text, logProbs, null, PromptTokens, CompletionTokens);
    }

    /// <summary>Ends the request because its caller cancelled it.</summary>
    /// <exception cref="InvalidOperationException">The request already finished.</exception>
    public GenerationUpdate Cancel()
    {
        if (Finished is not null) throw new InvalidOperationException("the request already finished");
        pending += detokenizer.Flush();
        return Finish(FinishReason.Cancelled, [], null);
    }

    private GenerationUpdate Finish(FinishReason reason, IReadOnlyList<int> tokens, IReadOnlyList<TokenLogProb>? logProbs)
    {
        Finished = reason;
        string text = pending;
        pending = "";
        return new GenerationUpdate(tokens, text, logProbs, reason, PromptTokens, CompletionTokens);
    }

    /// <summary>The length of the longest suffix of <paramref name="text"/> that is a proper prefix of a stop sequence.</summary>
    private int HeldBack(string text)
    {
        int best = 0;
        foreach (string stop in options.Stop)
            for (int n = Math.Min(stop.Length - 1, text.Length); n > best; n--)
                if (text.AsSpan(text.Length - n).SequenceEqual(stop.AsSpan(0, n)))
                {
                    best = n;
                    break;
                }
        return best;
    }
}
