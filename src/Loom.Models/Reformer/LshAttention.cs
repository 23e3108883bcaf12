using static TorchSharp.torch;

namespace Loom.Models.Reformer;

/// <summary>
/// Shared-QK attention as in the Reformer (Kitaev, Kaiser, Levskaya 2020, §2): keys are the length-normalised
/// queries, and a position attends to itself only when nothing else is open to it. This is the full (quadratic)
/// reference; <see cref="LshAttention"/> restricts it to hash buckets.
/// </summary>
public static class SharedQkAttention
{
    /// <summary>The score of a masked-out key (trax's value): finite, so a row never becomes all -inf.</summary>
    public const double MaskedScore = -1e9;

    /// <summary>
    /// The score of a position's own key. With shared QK a query's dot product with itself is the largest, so it
    /// would drown every other key; -1e5 (the paper's and trax's value) instead of -inf keeps a distribution for a
    /// lone token (the first one under a causal mask), which then attends to itself.
    /// </summary>
    public const double SelfScore = -1e5;

    /// <summary>The keys of shared-QK attention: each vector scaled to unit length, (..., Dh).</summary>
    public static Tensor Keys(Tensor qk) => qk * (qk.square().sum(-1, keepdim: true) + 1e-6).rsqrt(); // trax's epsilon

    /// <summary>
    /// Full shared-QK attention, out_i = Σ_j softmax_j(q_i·k̂_j/√Dh) v_j over the keys allowed to i.
    /// </summary>
    /// <param name="qk">The shared queries/keys, (B, H, T, Dh).</param>
    /// <param name="v">The values, (B, H, T, Dh).</param>
    /// <param name="causal">Whether position i sees only positions j ≤ i.</param>
    /// <param name="buckets">When given, (B, H, T): i sees only positions of its own bucket (one hash round).</param>
    /// <returns>(B, H, T, Dh).</returns>
    public static Tensor Full(Tensor qk, Tensor v, bool causal, Tensor? buckets = null)
    {
        ArgumentNullException.ThrowIfNull(qk);
        ArgumentNullException.ThrowIfNull(v);
        var dh = qk.shape[^1];
        var t = qk.shape[^2];
        var scores = qk.matmul(Keys(qk).transpose(-1, -2)) / Math.Sqrt(dh); // (B, H, T, T)
        var positions = arange(t, device: qk.device);                        // (T)
        scores = Masked(scores, positions.unsqueeze(-1), positions.unsqueeze(0),
            buckets?.unsqueeze(-1), buckets?.unsqueeze(-2), causal);
        return scores.softmax(-1).matmul(v);                                 // (B, H, T, Dh)
    }

    /// <summary>
    /// Applies the masking rules to scores (..., Q, K) given broadcastable query positions (..., Q, 1), key
    /// positions (..., 1, K) and optionally their buckets: later keys (when causal) and keys of other buckets get
    /// <see cref="MaskedScore"/>, a position's own key <see cref="SelfScore"/>.
    /// </summary>
    internal static Tensor Masked(Tensor scores, Tensor queryPositions, Tensor keyPositions, Tensor? queryBuckets, Tensor? keyBuckets, bool causal)
    {
        if (causal)
            scores = scores.masked_fill(keyPositions > queryPositions, MaskedScore);
        if (queryBuckets is not null && keyBuckets is not null)
            scores = scores.masked_fill(queryBuckets.ne(keyBuckets), MaskedScore);
        // Last, so that a lone token keeps SelfScore (its own key is never later, nor in another bucket).
        return scores.masked_fill(keyPositions.eq(queryPositions), SelfScore);
    }
}

/// <summary>
/// Shared-QK LSH attention (Reformer §2). Each of <c>rounds</c> random rotations R (Dh × n_buckets/2) hashes a
/// vector to h(x) = argmax([xR; −xR]); positions are sorted by (bucket, position) and cut into chunks of
/// <c>chunkLength</c>; each chunk attends to itself and the chunk before it, only within a bucket, causally when
/// asked, to itself only when nothing else is open. The rounds' outputs are combined by the weights of their
/// log-sum-exps. Parameter-free: the caller projects the shared QK and V (B, H, T, Dh), as Loom's attention does.
/// </summary>
/// <remarks>
/// Causality: a query never attends to a later position, so a later token's value never reaches an earlier
/// output. A later token's hash, though, moves the chunk boundaries of the sorted sequence, which can change which
/// earlier keys an earlier query sees (as in the paper and trax); only with one chunk (chunkLength ≥ T) are earlier
/// outputs wholly independent of later tokens.
/// </remarks>
public sealed class LshAttention : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Generator? generator;

    /// <summary>Creates the layer.</summary>
    /// <param name="buckets">Buckets per round: 1 (everything in one bucket) or an even number.</param>
    /// <param name="rounds">Independent hash rounds.</param>
    /// <param name="chunkLength">Length of the chunks of the sorted sequence; must divide T.</param>
    /// <param name="causal">Whether a position attends only to positions at or before it.</param>
    /// <param name="generator">Draws the rotations of <see cref="forward"/> (torch's default when null); not owned.</param>
    public LshAttention(int buckets, int rounds, int chunkLength, bool causal, Generator? generator = null) : base(nameof(LshAttention))
    {
        if (buckets < 1 || (buckets > 1 && buckets % 2 != 0))
            throw new ArgumentOutOfRangeException(nameof(buckets), buckets, "buckets must be 1 or an even number");
        if (rounds < 1)
            throw new ArgumentOutOfRangeException(nameof(rounds), rounds, "rounds must be at least 1");
        if (chunkLength < 1)
            throw new ArgumentOutOfRangeException(nameof(chunkLength), chunkLength, "chunkLength must be at least 1");
        Buckets = buckets;
        Rounds = rounds;
        ChunkLength = chunkLength;
        Causal = causal;
        this.generator = generator;
    }

    /// <summary>Buckets per hash round.</summary>
    public int Buckets { get; }

    /// <summary>Independent hash rounds.</summary>
    public int Rounds { get; }

    /// <summary>Length of a chunk of the sorted sequence.</summary>
    public int ChunkLength { get; }

    /// <summary>Whether attention is causal.</summary>
    public bool Causal { get; }

    /// <summary>LSH attention with fresh rotations from the generator given at construction.</summary>
    /// <param name="qk">Shared queries/keys, (B, H, T, Dh).</param>
    /// <param name="v">Values, (B, H, T, Dh).</param>
    /// <returns>(B, H, T, Dh).</returns>
    public override Tensor forward(Tensor qk, Tensor v) => Forward(qk, v, generator);

    /// <summary>LSH attention with rotations drawn from <paramref name="rotationGenerator"/> (deterministic for a seed).</summary>
    /// <param name="qk">Shared queries/keys, (B, H, T, Dh).</param>
    /// <param name="v">Values, (B, H, T, Dh).</param>
    /// <param name="rotationGenerator">A CPU generator (torch's default when null).</param>
    /// <param name="segments">Packed rows' segment ids, (B, T): a position sees only its own segment; null: one sequence per row.</param>
    /// <returns>(B, H, T, Dh).</returns>
    public Tensor Forward(Tensor qk, Tensor v, Generator? rotationGenerator, Tensor? segments = null)
    {
        ArgumentNullException.ThrowIfNull(qk);
        using var rotations = Rotations(qk.shape[^1], rotationGenerator).to(qk.dtype).to(qk.device);
        return Attend(qk, v, Hash(qk, rotations), segments);
    }

    /// <summary>
    /// Draws the random rotations R, (Dh, rounds, buckets/2), from N(0, 1) on the CPU (where the generator lives), so
    /// that a seed gives the same hashes on every device.
    /// </summary>
    public Tensor Rotations(long headDim, Generator? rotationGenerator) =>
        empty(headDim, Rounds, Buckets / 2).normal_(0, 1, rotationGenerator);

    /// <summary>The bucket of every position in every round, h(x) = argmax([xR; −xR]): (B, H, rounds, T), int64.</summary>
    /// <param name="qk">(B, H, T, Dh).</param>
    /// <param name="rotations">(Dh, rounds, buckets/2), from <see cref="Rotations"/>.</param>
    public Tensor Hash(Tensor qk, Tensor rotations)
    {
        ArgumentNullException.ThrowIfNull(qk);
        ArgumentNullException.ThrowIfNull(rotations);
        var (b, h, t) = (qk.shape[0], qk.shape[1], qk.shape[2]);
        if (Buckets == 1)
            return zeros(new[] { b, h, (long)Rounds, t }, ScalarType.Int64, qk.device);
        var rotated = einsum("bhtd,drk->bhrtk", qk, rotations); // (B, H, R, T, n_buckets/2)
        return cat([rotated, -rotated], -1).argmax(-1);          // (B, H, R, T)
    }

    /// <summary>LSH attention given every position's bucket in every round.</summary>
    /// <param name="qk">(B, H, T, Dh).</param>
    /// <param name="v">(B, H, T, Dh).</param>
    /// <param name="buckets">(B, H, rounds, T), int64, each in [0, buckets).</param>
    /// <param name="segments">Packed rows' segment ids, (B, T): a position sees only its own segment; null: one sequence per row.</param>
    /// <returns>(B, H, T, Dh).</returns>
    /// <exception cref="ArgumentException">The chunk length does not divide T.</exception>
    public Tensor Attend(Tensor qk, Tensor v, Tensor buckets, Tensor? segments = null)
    {
        ArgumentNullException.ThrowIfNull(qk);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(buckets);
        var (b, h, t, d) = (qk.shape[0], qk.shape[1], qk.shape[2], qk.shape[3]);
        if (t % ChunkLength != 0)
            throw new ArgumentException($"chunkLength {ChunkLength} must divide the sequence length {t}", nameof(qk));
        long r = Rounds, c = ChunkLength, n = t / c;
        // Packed rows: (segment, bucket) as one key, so that a key of another segment counts as another bucket.
        if (segments is not null)
            buckets = buckets + segments.to(ScalarType.Int64).view(b, 1, 1, t) * Buckets; // (B, H, R, T)

        // Sort by (bucket, position): the keys are distinct, so any sort is the stable one.
        var positions = arange(t, device: qk.device);                   // (T)
        var sticker = (buckets * t + positions).argsort(-1);             // (B, H, R, T): sorted slot -> position
        var undo = sticker.argsort(-1);                                  // (B, H, R, T): position -> sorted slot
        var sq = Gathered(qk, sticker, r);                               // (B, H, R, T, Dh)
        var sv = Gathered(v, sticker, r);                                // (B, H, R, T, Dh)
        var sb = buckets.gather(3, sticker);                             // (B, H, R, T)

        // Chunks; each sees itself and the chunk before (the first wraps to the last, whose positions are later,
        // so a causal mask removes them). One chunk sees everything already: no look-back, no duplicate keys.
        var q = sq.view(b, h, r, n, c, d);                               // (B, H, R, n, c, Dh)
        var k = LookOneBack(SharedQkAttention.Keys(q), n);               // (B, H, R, n, W, Dh), W = 2c (c when n = 1)
        var vv = LookOneBack(sv.view(b, h, r, n, c, d), n);              // (B, H, R, n, W, Dh)
        var qPos = sticker.view(b, h, r, n, c);                          // (B, H, R, n, c)
        var kPos = LookOneBack(qPos, n);                                 // (B, H, R, n, W)
        var qBucket = sb.view(b, h, r, n, c);
        var kBucket = LookOneBack(qBucket, n);

        var scores = q.matmul(k.transpose(-1, -2)) / Math.Sqrt(d);      // (B, H, R, n, c, W)
        scores = SharedQkAttention.Masked(scores, qPos.unsqueeze(-1), kPos.unsqueeze(-2),
            qBucket.unsqueeze(-1), kBucket.unsqueeze(-2), Causal);
        var lse = scores.logsumexp(-1, keepdim: true);                  // (B, H, R, n, c, 1)
        var outputs = (scores - lse).exp().matmul(vv);                  // (B, H, R, n, c, Dh)

        // Back to positions, then combine rounds: out = Σ_r exp(lse_r − logsumexp_r(lse)) · out_r.
        var o = outputs.view(b, h, r, t, d).gather(3, undo.unsqueeze(-1).expand(b, h, r, t, d)); // (B, H, R, T, Dh)
        var l = lse.view(b, h, r, t).gather(3, undo);                                            // (B, H, R, T)
        // softmax_r(lse) is that weight, computed from the max: at lse ≈ −1e5 (a lone token) fp32 cannot hold
        // lse − logsumexp(lse) = −log R to better than 1e-2, while lse − max(lse) is exactly 0.
        var weights = l.softmax(2);                                                              // (B, H, R, T)
        return (o * weights.unsqueeze(-1)).sum(2);                                               // (B, H, T, Dh)
    }

    // x (B, H, T, Dh) in the sorted order of each round: (B, H, R, T, Dh).
    private static Tensor Gathered(Tensor x, Tensor sticker, long rounds)
    {
        var (b, h, t, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        return x.unsqueeze(2).expand(b, h, rounds, t, d).gather(3, sticker.unsqueeze(-1).expand(b, h, rounds, t, d));
    }

    // Chunked x (B, H, R, n, c, ...) with each chunk followed by its predecessor along dim 4: (B, H, R, n, 2c, ...).
    private static Tensor LookOneBack(Tensor x, long chunks) => chunks == 1 ? x : cat([x, x.roll(1, 3)], 4);
}
