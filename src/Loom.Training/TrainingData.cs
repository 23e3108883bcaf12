using Loom.Data;

namespace Loom.Training;

/// <summary>The vocabulary and batch sources of a run.</summary>
/// <param name="Vocabulary">Tokenizer of the run.</param>
/// <param name="VocabularySpec">The vocabulary spec, with any SentencePiece model path made absolute.</param>
/// <param name="Train">Training batches, a pure function of (seed, index).</param>
/// <param name="Validation">Held-out batches.</param>
/// <param name="ValidationBytesPerToken">UTF-8 bytes per held-out token, to turn nats/token into bits/byte.</param>
/// <param name="CorpusName">Short name of the corpus (austen, or the file or folder name).</param>
/// <param name="Description">One line saying what the data is.</param>
public sealed record TrainingData(IVocabulary Vocabulary, string VocabularySpec, LmBatcher Train, LmBatcher Validation, double ValidationBytesPerToken, string CorpusName, string Description);
