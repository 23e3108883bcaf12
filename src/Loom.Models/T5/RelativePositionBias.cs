using Loom.Models.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.T5;

/// <summary>
/// T5's bucketed relative position bias (Raffel et al. 2020, §2.1): a learned scalar per head for each
/// bucket of key position − query position, added to the attention logits. Buckets are exact for small
/// distances and logarithmically wider up to <c>max_distance</c>, beyond which all distances share the
/// last bucket. One table per stack, computed once per forward and shared by all its layers (as T5 does:
/// only the first layer owns it); bidirectional in the encoder, causal in the decoder's self-attention.
/// </summary>
public sealed class RelativePositionBias : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Parameter weight; // (num_buckets, H)
    private readonly bool bidirectional;
    private readonly int numBuckets, maxDistance;

    /// <summary>
    /// Creates the table, N(0, D^-0.5) as HF transformers initialises it, drawn from
    /// <paramref name="generator"/> (torch's default when null).
    /// </summary>
    /// <exception cref="ArgumentException">The bucket settings give no valid buckets (see <see cref="Bucket"/>).</exception>
    public RelativePositionBias(int heads, bool bidirectional, int numBuckets, int maxDistance, int modelDim, Device? device = null, Generator? generator = null)
        : base(nameof(RelativePositionBias))
    {
        CheckBuckets(bidirectional, numBuckets, maxDistance);
        this.bidirectional = bidirectional;
        this.numBuckets = numBuckets;
        this.maxDistance = maxDistance;
        weight = new Parameter(empty(numBuckets, heads, device: device));
        Initializers.Normal(weight, 1 / Math.Sqrt(modelDim), generator);
        RegisterComponents();
    }

    /// <summary>Whether keys after the query get their own buckets (the encoder) or share bucket 0 with it (the decoder).</summary>
    public bool Bidirectional => bidirectional;

    /// <summary>
    /// The bias of every head for queries at <paramref name="queryPositions"/>, (B, T), attending keys at
    /// <paramref name="keyPositions"/>, (B, S) (either may have one row for all): (B, H, T, S).
    /// </summary>
    public override Tensor forward(Tensor queryPositions, Tensor keyPositions)
    {
        long b = Math.Max(queryPositions.shape[0], keyPositions.shape[0]);
        long t = queryPositions.shape[1], s = keyPositions.shape[1];
        var relative = keyPositions.unsqueeze(1) - queryPositions.unsqueeze(2);                 // (B, T, S): memory − context
        var buckets = Bucket(relative, bidirectional, numBuckets, maxDistance);                  // (B, T, S)
        var values = weight.index_select(0, buckets.reshape(-1)).view(b, t, s, weight.shape[1]); // (B, T, S, H)
        return values.permute(0, 3, 1, 2);                                                       // (B, H, T, S)
    }

    /// <summary>
    /// T5's <c>_relative_position_bucket</c> (mesh-tensorflow; HF transformers'
    /// <c>T5Attention._relative_position_bucket</c>): the bucket of each relative position (key − query).
    /// Bidirectional: half the buckets for keys at or before the query, half (offset by num_buckets/2) for
    /// keys after it. Causal: keys after the query all fall in bucket 0. Within a direction, the first
    /// half of its buckets hold distances 0, 1, ... exactly; the rest grow logarithmically up to
    /// <paramref name="maxDistance"/>, and farther distances take the last bucket. Computed in float32 as
    /// the reference does, so that the same distances land in the same buckets.
    /// </summary>
    /// <param name="relativePosition">Key position − query position, any shape, int64.</param>
    /// <param name="bidirectional">Whether keys after the query have buckets of their own.</param>
    /// <param name="numBuckets">Buckets in all (even when bidirectional).</param>
    /// <param name="maxDistance">Distance from which on the last bucket is used.</param>
    /// <returns>Buckets in 0..numBuckets-1, the input's shape, int64.</returns>
    /// <exception cref="ArgumentException">Too few buckets, an odd number of them for a bidirectional bias, or a max distance within the exact range.</exception>
    public static Tensor Bucket(Tensor relativePosition, bool bidirectional, int numBuckets, int maxDistance)
    {
        ArgumentNullException.ThrowIfNull(relativePosition);
        CheckBuckets(bidirectional, numBuckets, maxDistance);
        var n = numBuckets;
        Tensor offset, distance;
        if (bidirectional)
        {
            n /= 2;
            offset = relativePosition.gt(0).to(int64) * n;            // keys after the query: the upper half
            distance = relativePosition.abs();
        }
        else
        {
            offset = zeros_like(relativePosition, int64);
            distance = (-relativePosition).clamp_min(0);               // −min(relative, 0): later keys at distance 0
        }
        int maxExact = n / 2;
        var isSmall = distance.lt(maxExact);
        var logRatio = (distance.clamp_min(maxExact).to(float32) / maxExact).log();             // ≥ 0 where used
        var ifLarge = (logRatio / Math.Log((double)maxDistance / maxExact) * (n - maxExact)).to(int64) + maxExact;
        ifLarge = ifLarge.clamp_max(n - 1);
        return offset + where(isSmall, distance, ifLarge);
    }

    /// <summary>Throws unless the settings give each direction at least two buckets and a log range beyond the exact one.</summary>
    private static void CheckBuckets(bool bidirectional, int numBuckets, int maxDistance)
    {
        if (bidirectional && numBuckets % 2 != 0)
            throw new ArgumentException($"relative attention buckets = {numBuckets} must be even for a bidirectional bias (half for each direction)");
        int perDirection = bidirectional ? numBuckets / 2 : numBuckets;
        if (perDirection < 2)
            throw new ArgumentException($"relative attention buckets = {numBuckets} leave {perDirection} per direction: at least 2 are needed (exact and logarithmic)");
        if (maxDistance <= perDirection / 2)
            throw new ArgumentException($"relative attention max distance = {maxDistance} must exceed the {perDirection / 2} distances bucketed exactly");
    }
}
