//! berthd's connections to the shim: accepting, reading requests, writing answers and streams.

use super::*;

impl Shim {
    pub(super) fn token(&mut self) -> Token {
        self.next_token += 1;
        Token(self.next_token)
    }

    pub(super) fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut sock, _)) => {
                    let t = self.token();
                    if self
                        .poll
                        .registry()
                        .register(&mut sock, t, Interest::READABLE)
                        .is_ok()
                    {
                        self.clients.insert(
                            t,
                            Client {
                                sock,
                                inbuf: Vec::new(),
                                outbuf: Vec::new(),
                                state: ClientState::Request,
                                close_after_flush: false,
                                read_closed: false,
                                writable: false,
                            },
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return,
            }
        }
    }

    pub(super) fn on_client(&mut self, t: Token, readable: bool) {
        if readable {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let Some(c) = self.clients.get_mut(&t) else {
                    return;
                };
                if c.read_closed {
                    break;
                }
                match c.sock.read(&mut buf) {
                    Ok(0) => {
                        c.read_closed = true;
                        self.client_eof(t);
                        break;
                    }
                    Ok(n) => self.client_data(t, &buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        self.drop_client(t);
                        return;
                    }
                }
            }
        }
        self.flush_client(t);
    }

    pub(super) fn flush_client(&mut self, t: Token) {
        let Some(c) = self.clients.get_mut(&t) else {
            return;
        };
        while !c.outbuf.is_empty() {
            match c.sock.write_vectored(&[IoSlice::new(&c.outbuf)]) {
                Ok(n) => {
                    c.outbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.drop_client(t);
                    return;
                }
            }
        }
        if c.outbuf.is_empty() && c.close_after_flush {
            self.drop_client(t);
            return;
        }
        let writable = !c.outbuf.is_empty();
        if writable != c.writable {
            let want = if writable {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut c.sock, t, want)
                .is_ok()
            {
                c.writable = writable;
            }
        }
    }

    /// The client closed its sending side. Attached clients keep receiving output.
    pub(super) fn client_eof(&mut self, t: Token) {
        let Some(c) = self.clients.get(&t) else {
            return;
        };
        match &c.state {
            ClientState::Attached { stdin, .. } => {
                // `docker run -i` without a TTY: the client's EOF is the process's EOF.
                if *stdin && self.cfg.stdin_once && self.init_tty.is_none() {
                    self.init_stdin = None;
                }
            }
            ClientState::ExecStream(id) => {
                let id = id.clone();
                if let Some(e) = self.execs.get_mut(&id) {
                    if e.tty.is_none() {
                        e.stdin = None;
                    }
                }
            }
            // A waiter that hangs up (berthd went away) is not coming back.
            ClientState::Waiting | ClientState::ExecWaiting(_) | ClientState::Request => {
                self.drop_client(t)
            }
        }
    }

    pub(super) fn client_data(&mut self, t: Token, data: &[u8]) {
        let Some(c) = self.clients.get_mut(&t) else {
            return;
        };
        match &c.state {
            ClientState::Request => {
                c.inbuf.extend_from_slice(data);
                if let Some(i) = c.inbuf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = c.inbuf.drain(..=i).collect();
                    let rest = std::mem::take(&mut c.inbuf);
                    match serde_json::from_slice::<Request>(&line) {
                        Ok(req) => self.handle(t, req),
                        Err(e) => self.reply(t, Response::err(format!("bad request: {e}")), true),
                    }
                    if !rest.is_empty() {
                        self.client_data(t, &rest);
                    }
                }
            }
            ClientState::Attached { stdin: true, .. } => {
                if let Some(fd) = &self.init_stdin {
                    write_all_fd(fd.as_raw_fd(), data);
                }
            }
            ClientState::ExecStream(id) => {
                if let Some(fd) = self.execs.get(id).and_then(|e| e.stdin.as_ref()) {
                    write_all_fd(fd.as_raw_fd(), data);
                }
            }
            _ => {}
        }
    }

    pub(super) fn reply(&mut self, t: Token, resp: Response, close: bool) {
        if let Some(c) = self.clients.get_mut(&t) {
            c.outbuf.extend_from_slice(&response_line(&resp));
            c.close_after_flush = close;
        }
    }

    pub(super) fn drop_client(&mut self, t: Token) {
        if let Some(mut c) = self.clients.remove(&t) {
            let _ = self.poll.registry().deregister(&mut c.sock);
        }
    }
}
