namespace Loom.Training.Metrics;

/// <summary>
/// Fans every event out to several sinks, in the order given, and owns them: disposing the composite
/// disposes each of them.
/// </summary>
/// <remarks>
/// A failing sink does not starve the others: every sink is tried, and the failures are then thrown
/// together as an <see cref="AggregateException"/>. That way a broken TensorBoard directory cannot
/// cost the JSON Lines log its events.
/// </remarks>
public sealed class CompositeMetricSink : IMetricSink
{
    private readonly IMetricSink[] _sinks;
    private bool _disposed;

    /// <summary>Wraps the given sinks (none is allowed: the composite then discards events).</summary>
    /// <param name="sinks">The sinks to write to; the array is copied.</param>
    /// <exception cref="ArgumentNullException">The array or one of its elements is null.</exception>
    public CompositeMetricSink(params IMetricSink[] sinks)
    {
        ArgumentNullException.ThrowIfNull(sinks);
        for (int i = 0; i < sinks.Length; i++)
            if (sinks[i] is null)
                throw new ArgumentNullException(nameof(sinks), $"sink {i} is null");
        _sinks = (IMetricSink[])sinks.Clone();
    }

    /// <summary>The wrapped sinks, in the order they are written to.</summary>
    public IReadOnlyList<IMetricSink> Sinks => _sinks;

    /// <inheritdoc />
    /// <exception cref="AggregateException">One or more sinks threw; all of them were still tried.</exception>
    /// <exception cref="ObjectDisposedException">The composite has been disposed.</exception>
    public void Write(MetricEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        ObjectDisposedException.ThrowIf(_disposed, this);
        ForEach(s => s.Write(e));
    }

    /// <inheritdoc />
    /// <exception cref="AggregateException">One or more sinks threw; all of them were still tried.</exception>
    /// <exception cref="ObjectDisposedException">The composite has been disposed.</exception>
    public void Flush()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ForEach(s => s.Flush());
    }

    /// <summary>Disposes every wrapped sink, even if some of them throw. Calling it again does nothing.</summary>
    /// <exception cref="AggregateException">One or more sinks threw while being disposed.</exception>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        ForEach(s => s.Dispose());
    }

    private void ForEach(Action<IMetricSink> action)
    {
        List<Exception>? failures = null;
        foreach (IMetricSink sink in _sinks)
        {
            try
            {
                action(sink);
            }
            catch (Exception ex)
            {
                (failures ??= []).Add(ex);
            }
        }
        if (failures is not null)
            throw new AggregateException("one or more metric sinks failed", failures);
    }
}
