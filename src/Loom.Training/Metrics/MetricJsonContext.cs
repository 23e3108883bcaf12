using System.Text.Json.Serialization;

namespace Loom.Training.Metrics;

// Source-generated so that serialising an event per step costs no reflection, and so the format is
// fixed in one place. Named floating-point literals are allowed because a diverging run produces
// NaN or Infinity losses, and the log must record that rather than throw inside the training loop.
[JsonSourceGenerationOptions(
    WriteIndented = false,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(MetricEvent))]
internal sealed partial class MetricJsonContext : JsonSerializerContext;
