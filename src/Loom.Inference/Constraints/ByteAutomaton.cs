using System.Runtime.InteropServices;

namespace Loom.Inference.Constraints;

/// <summary>The kinds of node of a <see cref="ByteAutomaton"/>.</summary>
internal enum NodeKind : byte
{
    /// <summary>Consumes one byte in <c>[Lo, Hi]</c>, then goes to <c>Next</c>.</summary>
    Range,

    /// <summary>Goes, without consuming, to any of <c>Targets</c>.</summary>
    Split,

    /// <summary>Pushes <c>Next</c> and goes to the rule that starts at <c>Rule</c>.</summary>
    Call,

    /// <summary>Pops a return node and goes there; with an empty stack the text is whole.</summary>
    Return,
}

/// <summary>One node of a <see cref="ByteAutomaton"/>.</summary>
internal struct Node
{
    public NodeKind Kind;
    public byte Lo;
    public byte Hi;
    public int Next;
    public int Rule;
    public int[]? Targets;
}

/// <summary>
/// Builds a <see cref="ByteAutomaton"/> in continuation-passing style: every method takes the node to go to after its
/// fragment and returns the fragment's first node, so fragments are built back to front.
/// </summary>
internal sealed class AutomatonBuilder
{
    private readonly List<Node> nodes = [];

    /// <summary>Creates the builder with its one <see cref="NodeKind.Return"/> node.</summary>
    public AutomatonBuilder() => ReturnNode = Add(new Node { Kind = NodeKind.Return });

    /// <summary>The return node: the end of every rule (and, with an empty stack, of the whole text).</summary>
    public int ReturnNode { get; }

    /// <summary>The number of nodes so far.</summary>
    public int Count => nodes.Count;

    /// <summary>One byte in <c>[lo, hi]</c>.</summary>
    public int Range(byte lo, byte hi, int next) => Add(new Node { Kind = NodeKind.Range, Lo = lo, Hi = hi, Next = next });

    /// <summary>Exactly <paramref name="b"/>.</summary>
    public int Byte(byte b, int next) => Range(b, b, next);

    /// <summary>Exactly <paramref name="bytes"/>.</summary>
    public int Bytes(ReadOnlySpan<byte> bytes, int next)
    {
        for (int i = bytes.Length - 1; i >= 0; i--) next = Byte(bytes[i], next);
        return next;
    }

    /// <summary>Any of <paramref name="targets"/>.</summary>
    public int Split(params int[] targets) => targets.Length == 1 ? targets[0] : Add(new Node { Kind = NodeKind.Split, Targets = targets });

    /// <summary>A split whose targets are set later (<see cref="SetTargets"/>): loops and recursive rules.</summary>
    public int Placeholder() => Add(new Node { Kind = NodeKind.Split, Targets = [] });

    /// <summary>Sets the targets of a <see cref="Placeholder"/>.</summary>
    public void SetTargets(int placeholder, params int[] targets)
    {
        var node = nodes[placeholder];
        node.Targets = targets;
        nodes[placeholder] = node;
    }

    /// <summary>The rule that starts at <paramref name="rule"/> (it ends at <see cref="ReturnNode"/>), then <paramref name="next"/>.</summary>
    public int Call(int rule, int next) => Add(new Node { Kind = NodeKind.Call, Rule = rule, Next = next });

    /// <summary>The automaton that starts at <paramref name="start"/>.</summary>
    public ByteAutomaton Build(int start) => new([.. nodes], start);

    private int Add(Node node)
    {
        nodes.Add(node);
        return nodes.Count - 1;
    }
}

/// <summary>A return address on a <see cref="ByteAutomaton"/>'s stack: an immutable, interned list, so equal stacks are the same object.</summary>
internal sealed class Frame(int id, int returnNode, Frame? parent)
{
    public int Id { get; } = id;
    public int ReturnNode { get; } = returnNode;
    public Frame? Parent { get; } = parent;
    public int Depth { get; } = (parent?.Depth ?? 0) + 1;
}

/// <summary>A position in a <see cref="ByteAutomaton"/>: a node that consumes a byte (or the return node with an empty stack, meaning the text is whole) and a stack.</summary>
internal readonly record struct Cursor(int Node, Frame? Stack)
{
    public long Key => ((long)Node << 32) | (uint)((Stack?.Id ?? -1) + 1);
}

/// <summary>
/// A recursive transition network over bytes (a pushdown automaton): the compiled form of a <see cref="Grammar"/>.
/// A state is the set of threads that the text so far can be in; states are interned and their transitions memoized, so
/// walking a vocabulary's token trie from a state mostly reads arrays. Threads that could not finish the text within
/// <see cref="MaxDepth"/> nested rules are dropped as soon as they appear, so every live state can still be completed:
/// the constraint never walks into a dead end.
/// </summary>
/// <remarks>Not thread-safe: one automaton per request.</remarks>
internal sealed class ByteAutomaton
{
    /// <summary>The deepest rule nesting a text may use (bounds recursive schemas and nested JSON).</summary>
    public const int MaxDepth = 48;

    /// <summary>No state: the bytes so far are not a prefix of the language.</summary>
    public const int Dead = -1;

    private const int Unknown = -2;
    private const int Infinite = int.MaxValue / 4;

    private readonly Node[] nodes;
    private readonly int[] need;
    private readonly int[] shortest;
    private readonly Dictionary<(int, Frame?), Frame> frames = [];
    private readonly Dictionary<long[], int> stateIds = new(new KeyComparer());
    private readonly List<State> states = [];
    private readonly HashSet<(int, Frame?)> seen = [];
    private readonly List<Cursor> found = [];
    private readonly Stack<(int, Frame?)> work = new();

    /// <summary>Creates the automaton of <paramref name="nodes"/>, starting at <paramref name="start"/>.</summary>
    /// <exception cref="ArgumentException">The language is empty (no text can be finished within <see cref="MaxDepth"/> nested rules).</exception>
    public ByteAutomaton(Node[] nodes, int start)
    {
        this.nodes = nodes;
        need = ComputeNeed(nodes);
        shortest = ComputeShortest(nodes);
        if (need[start] > MaxDepth)
            throw new ArgumentException($"the grammar admits no finite text within {MaxDepth} nested rules");
        Start = Intern(Close([new Cursor(start, null)]));
    }

    /// <summary>The state before any byte.</summary>
    public int Start { get; }

    /// <summary>The number of states created so far.</summary>
    public int StateCount => states.Count;

    /// <summary>Whether the text that led to <paramref name="state"/> is whole.</summary>
    public bool IsAccepting(int state) => states[state].Accepting;

    /// <summary>Whether some non-empty continuation of <paramref name="state"/> exists.</summary>
    public bool CanContinue(int state) => states[state].Consuming;

    /// <summary>The threads of <paramref name="state"/> (for the reference mask).</summary>
    public IReadOnlyList<Cursor> Threads(int state) => states[state].Threads;

    /// <summary>
    /// The fewest bytes that finish the text from <paramref name="state"/> (0 when it is whole), ignoring the nesting bound:
    /// what a caller that must end soon steers by.
    /// </summary>
    public int Remaining(int state)
    {
        var s = states[state];
        if (s.Remaining >= 0) return s.Remaining;
        int best = Infinite;
        foreach (var t in states[state].Threads)
        {
            long total = shortest[t.Node];
            for (var f = t.Stack; f is not null; f = f.Parent) total += shortest[f.ReturnNode];
            best = (int)Math.Min(best, total);
        }
        s.Remaining = best;
        return best;
    }

    /// <summary>The state after <paramref name="b"/>, or <see cref="Dead"/>; memoized.</summary>
    public int Step(int state, byte b)
    {
        var s = states[state];
        s.Next ??= CreateTransitions();
        int next = s.Next[b];
        if (next != Unknown) return next;
        var threads = Advance(s.Threads, b);
        next = threads.Count == 0 ? Dead : Intern(threads);
        states[state].Next![b] = next;
        return next;
    }

    /// <summary>The threads after <paramref name="b"/>, computed afresh (the reference path: no interning, no memo).</summary>
    public List<Cursor> Advance(IReadOnlyList<Cursor> threads, byte b)
    {
        var moved = new List<Cursor>();
        foreach (var t in threads)
        {
            ref readonly var n = ref nodes[t.Node];
            if (n.Kind == NodeKind.Range && b >= n.Lo && b <= n.Hi) moved.Add(new Cursor(n.Next, t.Stack));
        }
        return moved.Count == 0 ? moved : Close(moved);
    }

    /// <summary>Whether any thread of <paramref name="threads"/> is the whole text.</summary>
    public bool AnyAccepting(IReadOnlyList<Cursor> threads) => threads.Any(t => nodes[t.Node].Kind == NodeKind.Return && t.Stack is null);

    /// <summary>
    /// The epsilon closure of <paramref name="starts"/>: the threads at byte-consuming nodes (and the whole-text thread)
    /// reachable through splits, calls and returns, without those that cannot finish within <see cref="MaxDepth"/>.
    /// </summary>
    private List<Cursor> Close(List<Cursor> starts)
    {
        seen.Clear();
        found.Clear();
        for (int i = starts.Count - 1; i >= 0; i--) work.Push((starts[i].Node, starts[i].Stack));
        while (work.Count > 0)
        {
            var (node, stack) = work.Pop();
            if ((stack?.Depth ?? 0) + need[node] > MaxDepth || !seen.Add((node, stack))) continue;
            ref readonly var n = ref nodes[node];
            switch (n.Kind)
            {
                case NodeKind.Range:
                    found.Add(new Cursor(node, stack));
                    break;
                case NodeKind.Split:
                    for (int i = n.Targets!.Length - 1; i >= 0; i--) work.Push((n.Targets[i], stack));
                    break;
                case NodeKind.Call:
                    work.Push((n.Rule, Push(n.Next, stack)));
                    break;
                case NodeKind.Return:
                    if (stack is null) found.Add(new Cursor(node, null));
                    else work.Push((stack.ReturnNode, stack.Parent));
                    break;
            }
        }
        return [.. found];
    }

    private Frame Push(int returnNode, Frame? parent)
    {
        if (!frames.TryGetValue((returnNode, parent), out var frame))
        {
            frame = new Frame(frames.Count, returnNode, parent);
            frames.Add((returnNode, parent), frame);
        }
        return frame;
    }

    private int Intern(List<Cursor> threads)
    {
        var keys = new long[threads.Count];
        for (int i = 0; i < keys.Length; i++) keys[i] = threads[i].Key;
        Array.Sort(keys);
        if (stateIds.TryGetValue(keys, out int id)) return id;
        var sorted = threads.OrderBy(t => t.Key).ToArray();
        bool accepting = AnyAccepting(sorted);
        states.Add(new State(sorted, accepting, sorted.Any(t => nodes[t.Node].Kind == NodeKind.Range)));
        stateIds.Add(keys, states.Count - 1);
        return states.Count - 1;
    }

    private static int[] CreateTransitions()
    {
        var next = new int[256];
        Array.Fill(next, Unknown);
        return next;
    }

    /// <summary>
    /// For each node, the fewest nested rules (stack frames beyond the current one) any path from it to its rule's
    /// return needs; <see cref="Infinite"/> where none ends.
    /// </summary>
    private static int[] ComputeNeed(Node[] nodes) => LeastFixpoint(nodes, (need, n) => n.Kind switch
    {
        NodeKind.Return => 0,
        NodeKind.Range => need[n.Next],
        NodeKind.Split => n.Targets!.Length == 0 ? Infinite : n.Targets.Min(t => need[t]),
        _ => Math.Min(Infinite, Math.Max(1 + need[n.Rule], need[n.Next])),
    });

    /// <summary>For each node, the fewest bytes from it to its rule's return; <see cref="Infinite"/> where none ends.</summary>
    private static int[] ComputeShortest(Node[] nodes) => LeastFixpoint(nodes, (shortest, n) => n.Kind switch
    {
        NodeKind.Return => 0,
        NodeKind.Range => Math.Min(Infinite, 1 + shortest[n.Next]),
        NodeKind.Split => n.Targets!.Length == 0 ? Infinite : n.Targets.Min(t => shortest[t]),
        _ => Math.Min(Infinite, shortest[n.Rule] + shortest[n.Next]),
    });

    /// <summary>
    /// The least per-node values that <paramref name="rule"/> (a node's value from the current values) settles on: every
    /// node starts at <see cref="Infinite"/> and is lowered until no rule lowers any.
    /// </summary>
    private static int[] LeastFixpoint(Node[] nodes, Func<int[], Node, int> rule)
    {
        var values = new int[nodes.Length];
        Array.Fill(values, Infinite);
        for (bool changed = true; changed;)
        {
            changed = false;
            for (int i = 0; i < nodes.Length; i++)
            {
                int value = rule(values, nodes[i]);
                if (value < values[i])
                {
                    values[i] = value;
                    changed = true;
                }
            }
        }
        return values;
    }

    private sealed class State(Cursor[] threads, bool accepting, bool consuming)
    {
        public Cursor[] Threads { get; } = threads;
        public bool Accepting { get; } = accepting;
        public bool Consuming { get; } = consuming;
        public int[]? Next;
        public int Remaining = -1;
    }

    private sealed class KeyComparer : IEqualityComparer<long[]>
    {
        public bool Equals(long[]? x, long[]? y) => x.AsSpan().SequenceEqual(y);

        public int GetHashCode(long[] obj)
        {
            var hash = new HashCode();
            hash.AddBytes(MemoryMarshal.AsBytes(obj.AsSpan()));
            return hash.ToHashCode();
        }
    }
}
