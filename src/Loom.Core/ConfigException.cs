namespace Loom.Core;

/// <summary>A configuration error: an unknown key, a bad value or a missing file. The message is one
/// line that names the key or file and says how to fix it.</summary>
public sealed class ConfigException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ConfigException(string message) : base(message) { }

    /// <summary>Creates the exception with its cause.</summary>
    public ConfigException(string message, Exception inner) : base(message, inner) { }

    /// <summary>Creates the exception with no message.</summary>
    public ConfigException() { }
}
