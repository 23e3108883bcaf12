namespace Loom.Planning;

/// <summary>A chatbot-style request (Pope et al., section 5): prefill the input after a cached context, then generate tokens one at a time.</summary>
/// <param name="Batch">Sequences served together.</param>
/// <param name="Context">Tokens per sequence already in the KV cache (earlier turns).</param>
/// <param name="Input">New input tokens per sequence, processed in one prefill pass.</param>
/// <param name="Generate">Tokens generated per sequence, one decode step each.</param>
public sealed record ServingRequest(int Batch, long Context, int Input, int Generate)
{
    /// <summary>Throws on a nonsensical size; returns the request.</summary>
    /// <exception cref="ArgumentException">A size out of range, naming the option to fix.</exception>
    public ServingRequest Validate()
    {
        if (Batch <= 0) throw new ArgumentException($"--batch {Batch} must be a positive integer");
        if (Context < 0) throw new ArgumentException($"--context {Context} must not be negative");
        if (Input <= 0) throw new ArgumentException($"--input {Input} must be a positive integer");
        if (Generate < 0) throw new ArgumentException($"--generate {Generate} must not be negative");
        return this;
    }

    /// <summary>The prefill pass.</summary>
    public InferencePass Prefill => new(Batch, Input, Context);

    /// <summary>Decode step <paramref name="step"/> (0-based): one token after context + input + step cached ones.</summary>
    public InferencePass Decode(int step) => new(Batch, 1, Context + Input + step);
}

/// <summary>The end-to-end cost of a <see cref="ServingRequest"/> with one layout per phase.</summary>
/// <param name="Prefill">The prefill pass.</param>
/// <param name="FirstDecode">The first decode step (the per-token figure the paper quotes), null when nothing is generated.</param>
/// <param name="DecodeSeconds">All decode steps together (each step at its own context length).</param>
/// <param name="Feasible">Whether both phases can run (the last decode step's cache must fit too).</param>
/// <param name="Reason">Why not, when not.</param>
public sealed record ServingCost(PassCost Prefill, PassCost? FirstDecode, double DecodeSeconds, bool Feasible, string? Reason)
{
    /// <summary>Prefill plus all decode steps.</summary>
    public double TotalSeconds => Prefill.LatencySeconds + DecodeSeconds;
}

/// <summary>Plans a <see cref="ServingRequest"/>: the best layout per phase and the end-to-end time.</summary>
public static class ServingPlanner
{
    /// <summary>
    /// The end-to-end cost with <paramref name="prefill"/> for the input and <paramref name="decode"/> for every
    /// generated token (the paper reshards between phases, so each gets its own layout).
    /// </summary>
    public static ServingCost Cost(InferenceCostModel model, ServingRequest request, Layout prefill, Layout decode)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(request);
        request.Validate();
        PassCost first = model.Evaluate(prefill, request.Prefill);
        if (!first.Feasible) return new ServingCost(first, null, double.PositiveInfinity, false, $"prefill: {first.Reason}");
        if (request.Generate == 0) return new ServingCost(first, null, 0, true, null);
        PassCost firstDecode = model.Evaluate(decode, request.Decode(0));
        PassCost last = model.Evaluate(decode, request.Decode(request.Generate - 1));
        if (!last.Feasible) return new ServingCost(first, firstDecode, double.PositiveInfinity, false, $"decode: {last.Reason}");
        double decodeSeconds = 0;
        for (int step = 0; step < request.Generate; step++) decodeSeconds += model.Evaluate(decode, request.Decode(step)).LatencySeconds;
        return new ServingCost(first, firstDecode, decodeSeconds, true, null);
    }

    /// <summary>The end-to-end cost with the fastest feasible layout for each phase; null when a phase has none.</summary>
    public static ServingCost? Best(InferenceCostModel model, ServingRequest request)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(request);
        request.Validate();
        PassCost? prefill = model.Best(request.Prefill);
        if (prefill is null) return null;
        if (request.Generate == 0) return Cost(model, request, prefill.Layout, prefill.Layout);
        // The decode layout must hold the cache of the last step, so rank on that step.
        PassCost? decode = model.Best(request.Decode(request.Generate - 1));
        return decode is null ? null : Cost(model, request, prefill.Layout, decode.Layout);
    }
}
