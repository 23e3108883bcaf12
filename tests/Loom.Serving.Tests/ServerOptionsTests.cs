namespace Loom.Serving.Tests;

public class ServerOptionsTests
{
    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("0.0.0.0")]
    [InlineData("::")]
    [InlineData("localhost")]
    public void HostsAreAddressesOrLocalhost(string host) => Assert.Equal(host, new ServerOptions { Host = host }.Host);

    [Fact]
    public void BadValuesAreRefusedWithAHint()
    {
        Assert.Contains("127.0.0.1", Assert.Throws<ArgumentException>(() => new ServerOptions { Host = "example.com" }).Message);
        Assert.Throws<ArgumentException>(() => new ServerOptions { Port = 70000 });
        Assert.Throws<ArgumentException>(() => new ServerOptions { ApiKeys = ["sk one"] });
        Assert.Throws<ArgumentException>(() => new ServerOptions { ApiKeys = [""] });
        Assert.Throws<ArgumentException>(() => new ServerOptions { ShutdownTimeout = TimeSpan.FromSeconds(-1) });
    }

    [Fact]
    public void KeyListsAreCommaSeparated()
    {
        Assert.Equal(["a", "b"], ServerOptions.ParseApiKeyList(" a, b ,,"));
        Assert.Empty(ServerOptions.ParseApiKeyList(null));
        Assert.Empty(ServerOptions.ParseApiKeyList("  "));
    }
}
