using Loom.Data;
using Loom.Models;

namespace Loom.Inference;

/// <summary>Loads the vocabulary a checkpoint was trained with.</summary>
public static class CheckpointVocabulary
{
    /// <summary>
    /// Builds the manifest's vocabulary spec (<see cref="Vocabularies.Create"/>); a SentencePiece model
    /// it names is read from the checkpoint folder.
    /// </summary>
    /// <exception cref="InvalidDataException">The stored vocabulary file is missing.</exception>
    public static IVocabulary Load(string checkpointDirectory, ModelManifest manifest)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        if (Vocabularies.ModelFile(manifest.Vocabulary) is not { } file) return Vocabularies.Create(manifest.Vocabulary);
        string path = Path.Combine(checkpointDirectory, file);
        if (!File.Exists(path)) throw new InvalidDataException($"{checkpointDirectory}: vocabulary file {file} is missing from the checkpoint");
        return Vocabularies.Create(Vocabularies.WithModelFile(manifest.Vocabulary, path));
    }
}
