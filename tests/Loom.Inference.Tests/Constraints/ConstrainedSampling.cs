using Loom.Data;
using Loom.Inference.Constraints;

namespace Loom.Inference.Tests.Constraints;

/// <summary>
/// Draws token sequences a constraint allows, the way a random model would: uniformly among the allowed tokens for a
/// while, then steering to the end (the allowed short token that leaves the fewest bytes to finish), so every draw ends.
/// </summary>
internal static class ConstrainedSampling
{
    public static int[] Draw(TokenConstraintFactory factory, Grammar grammar, Random rng, int freeSteps, bool checkReference = false)
    {
        var constraint = (TokenConstraint)factory.Create(grammar);
        var vocabulary = factory.Vocabulary;
        var tokens = factory.TokenByteStrings;
        var allowed = new bool[vocabulary.Size];
        var reference = new bool[vocabulary.Size];
        var ids = new List<int>();
        var candidates = new List<int>();
        for (int step = 0; ; step++)
        {
            if (step > freeSteps + 4000) throw new InvalidOperationException($"no end after {step} tokens: {vocabulary.Decode([.. ids])}");
            constraint.FillAllowed(allowed);
            if (checkReference)
            {
                TokenConstraintFactory.FillAllowedReference(constraint, reference);
                Assert.Equal(reference, allowed);
            }
            Assert.Equal(constraint.IsComplete, allowed[vocabulary.EosId]);
            if (allowed[vocabulary.EosId] && (!constraint.CanContinue || step >= freeSteps || rng.Next(8) == 0)) return [.. ids];
            candidates.Clear();
            for (int id = 0; id < allowed.Length; id++)
                if (allowed[id] && id != vocabulary.EosId) candidates.Add(id);
            if (candidates.Count == 0) throw new InvalidOperationException($"dead end after {vocabulary.Decode([.. ids])}");
            int token;
            if (step < freeSteps) token = candidates[rng.Next(candidates.Count)];
            else
            {
                int best = int.MaxValue;
                var shortest = new List<int>();
                foreach (int id in candidates)
                {
                    if (tokens[id]!.Length > 3) continue;
                    int remaining = constraint.RemainingBytesAfter(id)!.Value + tokens[id]!.Length;
                    if (remaining < best) { best = remaining; shortest.Clear(); }
                    if (remaining == best) shortest.Add(id);
                }
                token = shortest.Count > 0 ? shortest[rng.Next(shortest.Count)] : candidates[rng.Next(candidates.Count)];
            }
            constraint.Advance(token);
            ids.Add(token);
        }
    }
}
