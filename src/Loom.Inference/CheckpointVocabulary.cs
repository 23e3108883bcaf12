using Loom.Data;
using Loom.Models;

namespace Loom.Inference;

/// <summary>Loads the vocabulary a checkpoint was trained with.</summary>
public static class CheckpointVocabulary
{
    /// <summary>"byte" gives the byte vocabulary; otherwise the SentencePiece model stored in the checkpoint folder.</summary>
    /// <exception cref="InvalidDataException">The stored vocabulary file is missing.</exception>
    public static IVocabulary Load(string checkpointDirectory, ModelManifest manifest)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        if (manifest.Vocabulary == "byte") return new ByteVocabulary();
        string path = Path.Combine(checkpointDirectory, manifest.Vocabulary);
        if (!File.Exists(path)) throw new InvalidDataException($"{checkpointDirectory}: vocabulary file {manifest.Vocabulary} is missing from the checkpoint");
        return Vocabularies.Create(path);
    }
}
