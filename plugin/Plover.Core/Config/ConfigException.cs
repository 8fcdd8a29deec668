namespace Plover.Config;

/// <summary>A cluster config that cannot be used; the message names the field and the problem.</summary>
public sealed class ConfigException : Exception
{
    public ConfigException(string message) : base(message) { }
    public ConfigException(string message, Exception inner) : base(message, inner) { }
}
