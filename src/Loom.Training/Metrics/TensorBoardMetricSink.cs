using TorchSharp;
using TorchSharp.Modules;

namespace Loom.Training.Metrics;

/// <summary>
/// Writes events as TensorBoard scalars through TorchSharp's <c>torch.utils.tensorboard.SummaryWriter</c>.
/// Every non-null quantity of an event becomes the scalar <c>{split}/{name}</c>, with the JSON names
/// of <see cref="MetricEvent"/>: <c>train/loss</c>, <c>train/lr</c>, <c>train/grad_norm</c>,
/// <c>train/tokens_per_s</c>, <c>train/mfu</c>, <c>train/z_loss</c>, <c>validation/loss</c>,
/// <c>validation/perplexity</c>, <c>validation/bits_per_byte</c>, and so on.
/// <see cref="MetricEvent.ElapsedSeconds"/> is not written; TensorBoard keeps its own wall time.
/// </summary>
/// <remarks>
/// <para>TorchSharp's writer opens, appends to and closes the events file for every scalar, so each
/// <see cref="Write"/> is on disk (in the OS cache) when it returns and <see cref="Flush"/> has nothing
/// left to do.</para>
/// <para>TensorBoard stores values as 32-bit floats and steps as 32-bit integers (TorchSharp's API);
/// steps above <see cref="int.MaxValue"/> are rejected. TorchSharp stamps each scalar with the wall
/// time in whole Unix seconds.</para>
/// <para>Each instance starts a new <c>events.out.tfevents.*</c> file in <see cref="LogDir"/>; a
/// resumed run writing into the same directory adds a file, and TensorBoard merges them.</para>
/// </remarks>
public sealed class TensorBoardMetricSink : IMetricSink
{
    private readonly object _gate = new();
    private SummaryWriter? _writer;

    /// <summary>Creates <paramref name="logDir"/> if needed and starts an events file in it.</summary>
    /// <param name="logDir">The TensorBoard run directory (point <c>tensorboard --logdir</c> at it or at its parent).</param>
    public TensorBoardMetricSink(string logDir)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(logDir);
        LogDir = Path.GetFullPath(logDir);
        _writer = torch.utils.tensorboard.SummaryWriter(LogDir);
    }

    /// <summary>The absolute path of the run directory.</summary>
    public string LogDir { get; }

    /// <inheritdoc />
    /// <exception cref="ArgumentOutOfRangeException">The step does not fit TensorBoard's 32-bit step.</exception>
    /// <exception cref="ObjectDisposedException">The sink has been disposed.</exception>
    public void Write(MetricEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        if (e.Step is < 0 or > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(e), e.Step, "TensorBoard steps are 32-bit; the step is outside 0..int.MaxValue");
        int step = (int)e.Step;
        if (e.Event is not null)
        {
            // An event is a mark on the timeline, not a point of the loss curve.
            lock (_gate) (_writer ?? throw new ObjectDisposedException(nameof(TensorBoardMetricSink))).add_scalar($"events/{e.Event}", (float)(e.RolledBackTo ?? 1), step);
            return;
        }
        string prefix = e.Task is null ? e.Split + "/" : $"{e.Split}/{e.Task}/";

        lock (_gate)
        {
            SummaryWriter writer = _writer ?? throw new ObjectDisposedException(nameof(TensorBoardMetricSink));
            void Scalar(string name, double? value)
            {
                if (value is double v)
                    writer.add_scalar(prefix + name, (float)v, step);
            }

            Scalar("loss", e.Loss);
            Scalar("lr", e.LearningRate);
            Scalar("grad_norm", e.GradNorm);
            Scalar("tokens_per_s", e.TokensPerSecond);
            Scalar("mfu", e.Mfu);
            Scalar("perplexity", e.Perplexity);
            Scalar("bits_per_byte", e.BitsPerByte);
            Scalar("z_loss", e.ZLoss);
            foreach (var (name, value) in e.Metrics ?? new Dictionary<string, double>())
                Scalar(name, value);
        }
    }

    /// <summary>Does nothing beyond checking the sink is open: every scalar is written when it is added.</summary>
    /// <exception cref="ObjectDisposedException">The sink has been disposed.</exception>
    public void Flush()
    {
        lock (_gate)
            ObjectDisposedException.ThrowIf(_writer is null, this);
    }

    /// <summary>Stops writing. Calling it again does nothing.</summary>
    public void Dispose()
    {
        // TorchSharp's SummaryWriter holds no open handle between writes, so there is nothing to close.
        lock (_gate)
            _writer = null;
    }
}
