using System.Text.RegularExpressions;

namespace Loom.Training.Tests;

/// <summary>
/// Everything outside Loom.Models depends on the model contract (LanguageModel, ModelOptions), never on a
/// concrete family: adding a family must not touch the trainer, the engines, the server or the CLI.
/// </summary>
public partial class ModelContractDependencyTests
{
    private static readonly string[] Folders = ["src/Loom.Training", "src/Loom.Inference", "src/Loom.Serving", "src/Loom.Cli"];

    // The concrete classes; ModelArchitectures.DecoderLm is the family's tag (a string), which is allowed.
    [GeneratedRegex(@"(?<!ModelArchitectures\.)\b(DecoderLm|T5Model|DecoderLmOptions|T5Options|VisionLanguageModel|VisionLanguageOptions)\b")]
    private static partial Regex ConcreteModelClass();

    [Fact]
    public void NoConcreteModelClassIsNamedOutsideLoomModels()
    {
        string root = RepositoryRoot.Find();
        var offences = new List<string>();
        int files = 0;
        foreach (string folder in Folders)
        {
            string path = Path.Combine(root, folder);
            Assert.True(Directory.Exists(path), $"{folder} is missing: update this test's folder list");
            foreach (string file in Directory.EnumerateFiles(path, "*.cs", SearchOption.AllDirectories))
            {
                string relative = Path.GetRelativePath(root, file).Replace('\\', '/');
                if (relative.Contains("/bin/", StringComparison.Ordinal) || relative.Contains("/obj/", StringComparison.Ordinal)) continue;
                files++;
                string[] lines = File.ReadAllLines(file);
                for (int i = 0; i < lines.Length; i++)
                    foreach (Match m in ConcreteModelClass().Matches(lines[i]))
                        offences.Add($"{relative}:{i + 1}: {m.Value}");
            }
        }
        Assert.True(files > 20, $"only {files} source files scanned under {root}");
        Assert.True(offences.Count == 0, "concrete model classes named outside Loom.Models (use LanguageModel / ModelOptions):\n" + string.Join('\n', offences));
    }
}
