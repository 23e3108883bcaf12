namespace Loom.Training.Metrics;

/// <summary>A destination for <see cref="MetricEvent"/>s: a log file, a TensorBoard run, or several at once.</summary>
public interface IMetricSink : IDisposable
{
    /// <summary>Records one event. Implementations make it durable against a process crash before returning where they can.</summary>
    /// <param name="e">The event to record.</param>
    void Write(MetricEvent e);

    /// <summary>Pushes anything still buffered to its final destination.</summary>
    void Flush();
}
