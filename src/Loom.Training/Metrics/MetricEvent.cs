using System.Text.Json.Serialization;

namespace Loom.Training.Metrics;

/// <summary>
/// One logged measurement of a training run: the loss of a split at a step, plus whichever
/// optional quantities were measured alongside it. Serialised as one JSON object with snake_case
/// names, always in this order so that log lines line up for a reader (<c>step</c>, <c>split</c>,
/// <c>loss</c>, <c>lr</c>, <c>grad_norm</c>, <c>tokens_per_s</c>, <c>mfu</c>, <c>perplexity</c>,
/// <c>bits_per_byte</c>, <c>z_loss</c>, <c>elapsed_s</c>); null members are left out.
/// </summary>
/// <param name="Step">The optimiser step the measurement belongs to.</param>
/// <param name="Split">Either <see cref="TrainSplit"/> or <see cref="ValidationSplit"/>.</param>
/// <param name="Loss">Mean cross-entropy in nats per token (non-finite values are kept, not rejected, so a diverging run is still logged).</param>
public sealed record MetricEvent(
    [property: JsonPropertyName("step"), JsonPropertyOrder(0)] long Step,
    string Split,
    [property: JsonPropertyName("loss"), JsonPropertyOrder(2)] double Loss)
{
    /// <summary>The <see cref="Split"/> value of measurements on training batches.</summary>
    public const string TrainSplit = "train";

    /// <summary>The <see cref="Split"/> value of measurements on held-out data.</summary>
    public const string ValidationSplit = "validation";

    // Checked on construction and on `with`, so a typo such as "valid" fails where it is made rather
    // than silently producing a third series in the logs and plots.
    private readonly string _split = CheckSplit(Split);

    /// <summary>Either <see cref="TrainSplit"/> or <see cref="ValidationSplit"/>.</summary>
    /// <exception cref="ArgumentException">Set to any other value.</exception>
    [JsonPropertyName("split"), JsonPropertyOrder(1)]
    public string Split
    {
        get => _split;
        init => _split = CheckSplit(value);
    }

    /// <summary>Learning rate in effect for the step.</summary>
    [JsonPropertyName("lr"), JsonPropertyOrder(3)]
    public double? LearningRate { get; init; }

    /// <summary>Global L2 norm of the gradients before clipping.</summary>
    [JsonPropertyName("grad_norm"), JsonPropertyOrder(4)]
    public double? GradNorm { get; init; }

    /// <summary>Training throughput in tokens per second.</summary>
    [JsonPropertyName("tokens_per_s"), JsonPropertyOrder(5)]
    public double? TokensPerSecond { get; init; }

    /// <summary>Model FLOPs utilisation as a fraction of peak (0.5 means 50%); see <see cref="Metrics.Mfu"/>.</summary>
    [JsonPropertyName("mfu"), JsonPropertyOrder(6)]
    public double? Mfu { get; init; }

    /// <summary>exp(loss), usually reported for validation.</summary>
    [JsonPropertyName("perplexity"), JsonPropertyOrder(7)]
    public double? Perplexity { get; init; }

    /// <summary>Loss converted to bits per UTF-8 byte of text, which is comparable across tokenizers.</summary>
    [JsonPropertyName("bits_per_byte"), JsonPropertyOrder(8)]
    public double? BitsPerByte { get; init; }

    /// <summary>The auxiliary z-loss term (PaLM's 1e-4·log²Z), when it is used.</summary>
    [JsonPropertyName("z_loss"), JsonPropertyOrder(9)]
    public double? ZLoss { get; init; }

    /// <summary>Seconds since the run (or the resumed run) started.</summary>
    [JsonPropertyName("elapsed_s"), JsonPropertyOrder(10)]
    public double? ElapsedSeconds { get; init; }

    /// <summary>
    /// The task a validation measurement belongs to when a run evaluates tasks one by one (a mixture,
    /// or a task scored by its metrics); null for the run's overall held-out loss.
    /// </summary>
    [JsonPropertyName("task"), JsonPropertyOrder(11)]
    public string? Task { get; init; }

    /// <summary>The task's metrics by name (accuracy, exact_match, bleu, rouge_l, ...), when it has any.</summary>
    [JsonPropertyName("metrics"), JsonPropertyOrder(12)]
    public IReadOnlyDictionary<string, double>? Metrics { get; init; }

    /// <summary>
    /// The model's auxiliary losses over the interval, weighted as they enter the total loss, by name
    /// (mixture of experts: <c>load_balancing</c>, <c>router_z_loss</c>).
    /// </summary>
    [JsonPropertyName("aux_losses"), JsonPropertyOrder(13)]
    public IReadOnlyDictionary<string, double>? AuxiliaryLosses { get; init; }

    /// <summary>Mixture of experts: each expert's share of the routed token assignments over the interval (averaged over MoE layers).</summary>
    [JsonPropertyName("expert_load"), JsonPropertyOrder(14)]
    public IReadOnlyList<double>? ExpertLoad { get; init; }

    /// <summary>Mixture of experts: the fraction of token assignments dropped for lack of expert capacity over the interval.</summary>
    [JsonPropertyName("dropped_fraction"), JsonPropertyOrder(15)]
    public double? DroppedFraction { get; init; }

    /// <summary>
    /// Set on lines that record an event rather than a measurement: <see cref="SpikeRollbackEvent"/> when a loss
    /// spike made the trainer roll back (then <see cref="Loss"/> and <see cref="GradNorm"/> are the bad update's).
    /// Loss plots and TensorBoard curves leave such lines out.
    /// </summary>
    [JsonPropertyName("event"), JsonPropertyOrder(16)]
    public string? Event { get; init; }

    /// <summary>Why the event happened, in words (for a spike: non-finite loss, or the loss against k × the recent median).</summary>
    [JsonPropertyName("reason"), JsonPropertyOrder(17)]
    public string? Reason { get; init; }

    /// <summary>A rollback: the step of the checkpoint restored.</summary>
    [JsonPropertyName("rolled_back_to"), JsonPropertyOrder(18)]
    public long? RolledBackTo { get; init; }

    /// <summary>A rollback: micro-batches skipped (from the checkpoint's data position through the spike, plus training.spike_recovery.skip_batches).</summary>
    [JsonPropertyName("skipped_micro_batches"), JsonPropertyOrder(19)]
    public long? SkippedMicroBatches { get; init; }

    /// <summary>fp16 training: the dynamic loss scale at the end of the interval.</summary>
    [JsonPropertyName("loss_scale"), JsonPropertyOrder(20)]
    public double? LossScale { get; init; }

    /// <summary>fp16 training: updates skipped so far because their gradients overflowed.</summary>
    [JsonPropertyName("skipped_updates"), JsonPropertyOrder(21)]
    public long? SkippedUpdates { get; init; }

    /// <summary>The <see cref="Event"/> of a loss-spike rollback.</summary>
    public const string SpikeRollbackEvent = "loss_spike_rollback";

    private static string CheckSplit(string split)
    {
        ArgumentNullException.ThrowIfNull(split);
        if (split != TrainSplit && split != ValidationSplit)
            throw new ArgumentException($"split must be \"{TrainSplit}\" or \"{ValidationSplit}\", not \"{split}\"", nameof(split));
        return split;
    }
}
