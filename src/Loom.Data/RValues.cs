namespace Loom.Data;

/// <summary>
/// An R generic vector (<c>list(...)</c>) read by <see cref="RSerialization"/>, with its
/// <c>names</c> attribute where it has one.
/// </summary>
/// <param name="Items">The elements, as <see cref="RSerialization.Unserialize"/> maps them.</param>
/// <param name="Names">The element names, or null when the list has none; an NA name is null.</param>
public sealed record RList(IReadOnlyList<object?> Items, IReadOnlyList<string?>? Names)
{
    /// <summary>Returns the element with the given name.</summary>
    /// <exception cref="KeyNotFoundException">No element has that name.</exception>
    public object? this[string name]
    {
        get
        {
            int i = Names is null ? -1 : Names.ToList().IndexOf(name);
            if (i < 0) throw new KeyNotFoundException($"R list has no element named '{name}'");
            return Items[i];
        }
    }
}

/// <summary>An R symbol (a name such as an attribute tag or an ALTREP class).</summary>
/// <param name="Name">The symbol's name.</param>
public sealed record RSymbol(string Name);

/// <summary>An R pairlist: tagged cells, as used for attributes and ALTREP descriptors.</summary>
/// <param name="Cells">The cells in order; a tag is null where the cell has none.</param>
public sealed record RPairList(IReadOnlyList<(string? Tag, object? Value)> Cells);
