using Loom.Data;
using Loom.Data.Tasks;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary><c>loom data list</c>: the registered tasks and mixtures.</summary>
public sealed class DataListCommand : Command<DataListCommand.Settings>
{
    /// <summary>No options.</summary>
    public sealed class Settings : CommandSettings;

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var registry = TaskRegistry.WithBuiltIns(new ByteVocabulary());
        Console.WriteLine("tasks:");
        foreach (var name in registry.TaskNames)
        {
            var task = registry.GetTask(name);
            Console.WriteLine($"  {name,-14} {task.Description}");
            Console.WriteLine($"  {"",-14} splits: {string.Join(", ", task.Source.Splits)}; features: {string.Join(", ", task.OutputFeatures.Keys)}"
                + (task.Metrics.Count > 0 ? $"; metrics: {string.Join(", ", task.Metrics.Select(m => m.Name))}" : ""));
        }
        Console.WriteLine(registry.MixtureNames.Count == 0 ? "mixtures: none registered" : $"mixtures: {string.Join(", ", registry.MixtureNames)}");
        return 0;
    }
}
