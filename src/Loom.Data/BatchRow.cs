namespace Loom.Data;

/// <summary>Where one row of a training batch comes from.</summary>
/// <param name="Epoch">The pass over the data that the row belongs to (0-based).</param>
/// <param name="Row">The row's index in <c>[0, RowCount)</c>; each index occurs once per epoch.</param>
/// <param name="Start">The offset in the token stream of the row's first input token.</param>
public readonly record struct BatchRow(long Epoch, int Row, long Start);
