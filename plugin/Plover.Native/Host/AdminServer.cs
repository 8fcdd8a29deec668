using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace Plover.Native.Host;

/// <summary>
/// The admin socket: a Unix stream socket (mode 0600) served by one library thread. One request per line, one
/// JSON object per line in reply, in order, per connection. Several clients may be connected; their requests are
/// executed one at a time. A line longer than MaxLine gets an error reply and its connection is closed (the
/// stream cannot be resynchronised); anything else bad gets an error reply and the connection stays open.
/// </summary>
internal sealed partial class AdminServer : IDisposable
{
    public const int MaxLine = 1 << 20;
    private const int MaxClients = 16;

    private readonly string _path;
    private readonly Socket _listener;
    private readonly Func<string, string> _execute;
    private readonly QemuHost _host;
    private readonly List<Client> _clients = [];
    private readonly Thread _thread;
    private volatile bool _stop;

    private AdminServer(string path, Socket listener, Func<string, string> execute, QemuHost host)
    {
        _path = path;
        _listener = listener;
        _execute = execute;
        _host = host;
        _thread = new Thread(Serve) { IsBackground = true, Name = "plover-admin" };
    }

    /// <summary>Binds the socket (replacing a stale socket file, refusing any other file) and starts the thread.
    /// Failures are InitException: QEMU refuses to start.</summary>
    public static AdminServer Start(string path, Func<string, string> execute, QemuHost host)
    {
        RemoveStaleSocket(path);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
            if (!OperatingSystem.IsWindows()) // before listen: no one can have connected yet
                File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            listener.Listen(8);
        }
        catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException)
        {
            listener.Dispose();
            throw new InitException(e is SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse } ? Errno.EADDRINUSE : Errno.EIO,
                $"admin socket {path}: {e.Message}");
        }
        var server = new AdminServer(path, listener, execute, host);
        server._thread.Start();
        return server;
    }

    private static void RemoveStaleSocket(string path)
    {
        if (LStatMode(path) is not uint mode)
            return;
        const uint S_IFMT = 0xF000, S_IFSOCK = 0xC000;
        if ((mode & S_IFMT) != S_IFSOCK)
            throw new InitException(Errno.EEXIST, $"admin socket {path}: a file that is not a socket is in the way");
        using (var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            try
            {
                probe.Connect(new UnixDomainSocketEndPoint(path));
                throw new InitException(Errno.EADDRINUSE, $"admin socket {path}: another process is serving it");
            }
            catch (SocketException)
            {
                // nobody listens: a stale socket left by a process that died
            }
        }
        File.Delete(path);
    }

    public void Dispose()
    {
        _stop = true;
        if (_thread.IsAlive && !_thread.Join(TimeSpan.FromSeconds(3)))
            _host.Warn("the admin thread did not stop within 3 s");
        lock (_clients)
        {
            foreach (Client c in _clients)
                c.Socket.Dispose();
            _clients.Clear();
        }
        _listener.Dispose();
        try { File.Delete(_path); } catch (IOException) { }
    }

    private void Serve()
    {
        var ready = new List<Socket>();
        var buffer = new byte[64 * 1024];
        while (!_stop)
        {
            try
            {
                ready.Clear();
                ready.Add(_listener);
                lock (_clients)
                    foreach (Client c in _clients)
                        ready.Add(c.Socket);
                Socket.Select(ready, null, null, 100_000); // wake every 100 ms to notice _stop
                foreach (Socket s in ready)
                {
                    if (_stop)
                        break;
                    if (s == _listener)
                        Accept();
                    else
                        Read(_clients.First(c => c.Socket == s), buffer);
                }
            }
            catch (Exception e) when (!_stop)
            {
                _host.Error($"admin server: {e.GetType().Name}: {e.Message}");
                Thread.Sleep(100);
            }
            catch (Exception)
            {
                // stopping: sockets are being closed under us
            }
        }
    }

    private void Accept()
    {
        Socket socket = _listener.Accept();
        socket.SendTimeout = 5000;
        lock (_clients)
        {
            if (_clients.Count >= MaxClients)
            {
                Send(socket, ErrorReply($"too many admin connections (at most {MaxClients})"));
                socket.Dispose();
                return;
            }
            _clients.Add(new Client(socket));
        }
    }

    private void Read(Client client, byte[] buffer)
    {
        int n;
        try
        {
            n = client.Socket.Receive(buffer);
        }
        catch (SocketException)
        {
            n = 0;
        }
        if (n == 0)
        {
            Drop(client);
            return;
        }
        client.Pending.AddRange(buffer.AsSpan(0, n));
        int newline;
        while ((newline = client.Pending.IndexOf((byte)'\n')) >= 0)
        {
            string line = Encoding.UTF8.GetString(client.Pending.GetRange(0, newline).ToArray()).TrimEnd('\r');
            client.Pending.RemoveRange(0, newline + 1);
            if (!Send(client.Socket, _execute(line)))
            {
                Drop(client);
                return;
            }
        }
        if (client.Pending.Count > MaxLine)
        {
            Send(client.Socket, ErrorReply($"request line longer than {MaxLine} bytes; closing the connection"));
            Drop(client);
        }
    }

    private void Drop(Client client)
    {
        lock (_clients)
            _clients.Remove(client);
        client.Socket.Dispose();
    }

    private static bool Send(Socket socket, string reply)
    {
        try
        {
            byte[] bytes = Encoding.UTF8.GetBytes(reply + "\n");
            int sent = 0;
            while (sent < bytes.Length)
                sent += socket.Send(bytes, sent, bytes.Length - sent, SocketFlags.None);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static string ErrorReply(string error) => AdminReply.Error(error);

    private sealed class Client(Socket socket)
    {
        public Socket Socket { get; } = socket;
        public List<byte> Pending { get; } = [];
    }

    // lstat(2) st_mode, or null when the path does not exist. The layout is x86-64 Linux's struct stat
    // (st_mode at byte 24), the only platform this library is built for.
    private static unsafe uint? LStatMode(string path)
    {
        byte* stat = stackalloc byte[256];
        if (LStat(path, stat) != 0)
            return null;
        return *(uint*)(stat + 24);
    }

    [LibraryImport("libc", EntryPoint = "lstat", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int LStat(string path, byte* buf);
}
