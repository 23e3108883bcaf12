using Loom.Data;
using Loom.Data.Tasks;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary><c>loom data list</c>: the registered tasks and mixtures.</summary>
public sealed class DataListCommand : Command<DataListCommand.Settings>
{
    /// <summary>No options.</summary>
    public sealed class Settings : TaskFolderSettings;

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var registry = settings.Registry(new ByteVocabulary());
        Console.WriteLine("tasks:");
        foreach (var name in registry.TaskNames)
        {
            var task = registry.GetTask(name);
            Console.WriteLine($"  {name,-14} {task.Description}");
            Console.WriteLine($"  {"",-14} splits: {string.Join(", ", task.Source.Splits)}; features: {string.Join(", ", task.OutputFeatures.Keys)}"
                + (task.Metrics.Count > 0 ? $"; metrics: {string.Join(", ", task.Metrics.Select(m => m.Name))}" : ""));
        }
        if (registry.MixtureNames.Count == 0)
        {
            Console.WriteLine("mixtures: none registered (add a mixture file to configs/tasks or a --task-dir folder)");
            return 0;
        }
        Console.WriteLine("mixtures:");
        foreach (var name in registry.MixtureNames)
        {
            var mixture = registry.GetMixture(name);
            string rates = mixture.RateBy == MixtureRateKind.Explicit
                ? string.Join(", ", mixture.Components.Select(c => FormattableString.Invariant($"{c.Name} {c.Rate:G4}")))
                : $"{string.Join(", ", mixture.Components.Select(c => c.Name))} by {(mixture.RateBy == MixtureRateKind.Examples ? "example count" : "size in tokens")}"
                  + (mixture.MaximumExamples is long max ? FormattableString.Invariant($" (at most {max:N0} each)") : "");
            if (mixture.Description.Length > 0) Console.WriteLine($"  {name,-14} {mixture.Description}");
            Console.WriteLine($"  {(mixture.Description.Length > 0 ? "" : name),-14} {rates}");
        }
        return 0;
    }
}
